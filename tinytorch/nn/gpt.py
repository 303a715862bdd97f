"""GPT: the GPT-2 architecture, with GPT-2's parameter names.

Pre-LayerNorm blocks, learned position embeddings, tanh GELU, a 4x MLP, a final LayerNorm and
an output head tied to the token embedding. `state_dict()` keys are those of transformers'
GPT2LMHeadModel (`transformer.h.0.attn.c_attn.weight`, ...), so a checkpoint needs no renaming
in either direction.
"""

from __future__ import annotations

import numpy as np

from ..gpt_config import GPTConfig
from . import functional as F
from .attention import CausalSelfAttention, KVCache
from .hub_mixin import ModelHubMixin
from .layers import GELU, Dropout, Embedding, LayerNorm, Linear
from .module import Module, ModuleDict, ModuleList


class MLP(Module):
    """(B, T, C) -> (B, T, 4C) -> GELU -> (B, T, C)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = Linear(config.n_embd, 4 * config.n_embd)
        self.gelu = GELU()
        self.c_proj = Linear(4 * config.n_embd, config.n_embd, std=0.02 / np.sqrt(2 * config.n_layer))
        self.dropout = Dropout(config.dropout)

    def forward(self, x, norm=None):
        """norm: a LayerNorm to apply to x first, fused with c_fc (a Block passes its ln_2)."""
        h = self.c_fc(x) if norm is None else self.c_fc.after_norm(norm, x)
        return self.dropout(self.c_proj(self.gelu(h)))


class Block(Module):
    """A pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.ln_1 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = CausalSelfAttention(config.n_embd, config.n_head, config.n_layer, config.dropout)
        self.ln_2 = LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config)

    def forward(self, x, cache: KVCache | None = None, attentions: list | None = None):
        x = x + self.attn(x, cache, attentions, norm=self.ln_1)  # ln_1 fused into c_attn
        return x + self.mlp(x, norm=self.ln_2)


class GPT(Module, ModelHubMixin):
    """from_pretrained, save_pretrained and push_to_hub come from ModelHubMixin (nn/hub_mixin.py)."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.transformer = ModuleDict(
            wte=Embedding(config.vocab_size, config.n_embd),
            wpe=Embedding(config.n_positions, config.n_embd),
            drop=Dropout(config.dropout),
            h=ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=LayerNorm(config.n_embd, config.layer_norm_epsilon),
        )

    def forward(self, idx, cache: KVCache | None = None, output_attentions: bool = False):
        """idx: (B, T) token ids -> logits (B, T, vocab_size).

        With gradients on, a batch big enough runs in shards on tinytorch's threads, one node of
        the caller's graph (tinytorch.parallel.ShardedForward); the result is the same.
        With a `cache`, idx holds only the new positions; the cached ones come before them.
        output_attentions: return (logits, attentions) instead, attentions holding each layer's
        attention weights, (B, H, T, T_keys) arrays whose rows sum to 1 (as in transformers).
        """
        idx = np.asarray(getattr(idx, "data", idx))
        if idx.ndim != 2:
            raise ValueError(f"GPT expects token ids of shape (batch, time), got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise TypeError(f"token ids must be integers, got dtype {idx.dtype}")
        start = cache.length if cache is not None else 0
        T = idx.shape[1]
        if start + T > self.config.n_positions:
            raise ValueError(
                f"{start + T} positions exceed the context window of {self.config.n_positions}; "
                "crop the input to the last n_positions ids"
            )
        if cache is None and not output_attentions:  # training: the batch in shards on threads
            from .. import parallel

            # dropout's random draws would come in a different order on each run: one shard then
            draws_random = self.training and self.config.dropout > 0
            parts = parallel.training_shards(self.parameters, idx.shape[0], T * self.config.n_embd, draws_random)
            if len(parts) > 1:
                return parallel.sharded_forward(self, self._forward, idx, parts)
        return self._forward(idx, cache, output_attentions)

    def _forward(self, idx: np.ndarray, cache: KVCache | None = None, output_attentions: bool = False):
        """forward() on checked ids, on this thread."""
        start = cache.length if cache is not None else 0
        T = idx.shape[1]
        t = self.transformer
        x = t.wte(idx) + t.wpe(np.arange(start, start + T))  # (B, T, C) + (T, C)
        x = t.drop(x)
        attentions = [] if output_attentions else None
        for i, block in enumerate(t.h):
            x = block(x, cache.layer(i) if cache is not None else None, attentions)
        if cache is not None:
            cache.advance(T)
        # ln_f, then the head, which shares the token embedding: (B, T, V)
        logits = F.layer_norm_linear(x, t.ln_f.weight, t.ln_f.bias, t.wte.weight.T, None, t.ln_f.eps)
        return (logits, attentions) if output_attentions else logits

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """Parameter groups for an optimizer (nanoGPT's configure_optimizers): the matrices decay;
        biases, LayerNorm and the embedding tables (wte, which the head shares, and wpe) do not."""
        embeddings = {id(m.weight) for m in self.modules() if isinstance(m, Embedding)}
        decay, no_decay = [], []
        for _, p in self.named_parameters():
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return [g for g in groups if g["params"]]

    def new_cache(self, batch: int = 1) -> KVCache:
        c = self.config
        dtype = self.transformer.wte.weight.dtype
        return KVCache(c.n_layer, batch, c.n_head, c.n_embd // c.n_head, c.n_positions, dtype)

    def generate(self, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
                 seed=None, stop=None, use_cache: bool = True, *, num_beams: int = 1, length_penalty: float = 0.0,
                 num_return_sequences: int = 1, repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
                 tokenizer=None, output_scores: bool = False, constraints=None):
        """Continue `ids` by up to `max_new_tokens` ids; returns prompt + continuation (a list).

        temperature 0 is greedy; num_beams > 1 is beam search; stop="line", "block" or "word" (with
        tokenizer=...) ends where an editor's completion would, and constraints=True keeps out what
        an editor never suggests. See tinytorch.generate.generate for every option.
        """
        from ..generate import generate

        return generate(self, ids, max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
                        seed=seed, stop=stop, use_cache=use_cache, num_beams=num_beams,
                        length_penalty=length_penalty, num_return_sequences=num_return_sequences,
                        repetition_penalty=repetition_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
                        tokenizer=tokenizer, output_scores=output_scores, constraints=constraints)
