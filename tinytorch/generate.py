"""Generating from a GPT: greedy, sampling (temperature, top-k, top-p), beam search, stop
conditions, a repetition guard, and the KV-cached decoder that makes each new token cost one
position.

The decoder runs the model's own kernels (tinytorch.kernels: linear, normalize, gelu,
attention_forward) on raw arrays, without autograd's bookkeeping; tests check that its logits
equal GPT.forward's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from . import kernels
from .beam_search import Sequence, beam_search
from .code_constraints import CodeConstraints, Rules
from .stopping import StopCondition
from .tensor import no_grad
from .text import PAD_ID, UNK_ID


# Bounds that keep every score finite and every request's memory in proportion: beam search
# ranks by length ** length_penalty (80 ** 200 overflows a float), the repetition penalty divides
# or multiplies logits by itself (1e-308 makes them infinite), and each beam holds a KV cache of
# the whole window (5,000 beams of the copilot: 2 GB).
MAX_NEW_TOKENS = 1_000_000
MAX_BEAMS = 1024  # about 0.4 GB of caches for the copilot; enough to search every continuation of a few characters
LENGTH_PENALTY_RANGE = (-10.0, 10.0)
REPETITION_PENALTY_RANGE = (1e-2, 1e2)


def check_sampling(max_new_tokens, temperature, top_k, top_p, num_beams=1, num_return_sequences=1,
                   length_penalty=0.0, repetition_penalty=1.0, no_repeat_ngram_size=0) -> None:
    """Raise ValueError, with the reason and the range, for arguments generation cannot honour."""
    if not isinstance(max_new_tokens, (int, np.integer)) or not 0 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise ValueError(f"max_new_tokens must be an integer from 0 to {MAX_NEW_TOKENS:,}, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")
    if not isinstance(num_beams, (int, np.integer)) or not 1 <= num_beams <= MAX_BEAMS:
        raise ValueError(f"num_beams must be an integer from 1 (no beam search) to {MAX_BEAMS}, got {num_beams!r}")
    if not isinstance(num_return_sequences, (int, np.integer)) or not 1 <= num_return_sequences <= num_beams:
        raise ValueError(f"num_return_sequences must be an integer from 1 to num_beams ({num_beams}), "
                         f"got {num_return_sequences!r}")
    low, high = LENGTH_PENALTY_RANGE
    if not isinstance(length_penalty, (int, float)) or not low <= length_penalty <= high:
        raise ValueError(f"length_penalty must be a number from {low:g} to {high:g}, got {length_penalty!r}")
    low, high = REPETITION_PENALTY_RANGE
    if not isinstance(repetition_penalty, (int, float)) or not low <= repetition_penalty <= high:
        raise ValueError(f"repetition_penalty must be a number from {low:g} to {high:g} (1 = off), "
                         f"got {repetition_penalty!r}")
    if not isinstance(no_repeat_ngram_size, (int, np.integer)) or no_repeat_ngram_size < 0:
        raise ValueError(f"no_repeat_ngram_size must be an integer >= 0 (0 = off), got {no_repeat_ngram_size!r}")


def next_token_probs(logits: np.ndarray, temperature: float, top_k=None, top_p=None) -> np.ndarray:
    """logits (V,) -> the distribution to sample the next id from (V,), float64.

    Temperature divides the logits; top-k keeps the k most likely ids; top-p keeps the fewest
    most likely ids whose probabilities add up to at least p. Temperature 0 puts all mass on the
    argmax (greedy).
    """
    logits = logits.astype(np.float64, copy=False)
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.argmax(logits)] = 1.0
        return probs
    logits = logits / temperature
    if top_k is not None and top_k < len(logits):
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = kernels.softmax(logits)
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]  # always at least one id
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return probs


def sample(rng: np.random.Generator, probs: np.ndarray) -> int:
    """An id drawn from `probs`: exactly rng.choice(len(probs), p=probs), the same id from the same
    generator state, without choice's argument checks, which cost 4x the draw itself."""
    cdf = np.cumsum(probs)
    cdf /= cdf[-1]
    return int(cdf.searchsorted(rng.random(), side="right"))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """(..., V) -> log-probabilities (..., V), float64; -inf logits stay -inf."""
    return kernels.log_softmax(logits.astype(np.float64, copy=False))


# ----------------------------------------------------------------------------- the repetition guard
def penalize_repeats(logits: np.ndarray, ids: list, penalty: float) -> np.ndarray:
    """transformers' repetition_penalty (CTRL's): the logit of every id already in `ids` is divided
    by `penalty` where positive and multiplied by it where negative (both make it less likely)."""
    seen = np.unique(np.asarray(ids, dtype=np.intp))
    chosen = logits[seen]
    logits[seen] = np.where(chosen > 0, chosen / penalty, chosen * penalty)
    return logits


def banned_by_ngrams(ids: list, n: int) -> np.ndarray:
    """transformers' no_repeat_ngram_size: the ids that would complete an n-gram already in `ids`
    (those that follow an earlier occurrence of its last n - 1 ids)."""
    if n < 1 or len(ids) < n:
        return np.empty(0, dtype=np.intp)
    seq = np.asarray(ids, dtype=np.intp)
    if n == 1:
        return np.unique(seq)
    windows = np.lib.stride_tricks.sliding_window_view(seq[:-1], n - 1)  # every (n-1)-gram with a successor
    match = (windows == seq[len(seq) - n + 1:]).all(axis=1)
    return np.unique(seq[n - 1:][match])


@dataclass
class Guard:
    """What every next-token distribution goes through first: <pad> and <unk> are never generated,
    and the optional repetition guard (transformers' semantics, over prompt and completion)."""

    never: tuple = (PAD_ID, UNK_ID)
    repetition_penalty: float = 1.0
    no_repeat_ngram_size: int = 0

    def __call__(self, logits: np.ndarray, ids: list) -> np.ndarray:
        """logits (V,) of the position after ids -> a new float64 array (V,) with -inf where banned."""
        logits = logits.astype(np.float64)
        if self.repetition_penalty != 1.0:
            logits = penalize_repeats(logits, ids, self.repetition_penalty)
        if self.no_repeat_ngram_size:
            logits[banned_by_ngrams(ids, self.no_repeat_ngram_size)] = -np.inf
        for i in self.never:
            if i < len(logits):
                logits[i] = -np.inf
        return logits


# ----------------------------------------------------------------------------- the cached decoder
@dataclass
class LayerWeights:
    """One block's weights as the decoder uses them, with two constant folds that save an op each
    on arrays where every op costs about a microsecond: each LayerNorm's scale and shift go into
    the matmul that follows it, (xhat * w + b) @ W + c = xhat @ (w[:, None] * W) + (b @ W + c),
    and attention's 1/sqrt(D) goes into the query columns of c_attn."""

    eps_1: float
    attn_w: np.ndarray  # (C, 3C): ln_1 and the query scale folded into c_attn
    attn_b: np.ndarray  # (3C,)
    proj_w: np.ndarray  # (C, C): attn.c_proj
    proj_b: np.ndarray
    eps_2: float
    fc_w: np.ndarray  # (C, 4C): ln_2 folded into mlp.c_fc
    fc_b: np.ndarray
    out_w: np.ndarray  # (4C, C): mlp.c_proj
    out_b: np.ndarray

    @classmethod
    def of(cls, block, query_scale: float) -> "LayerWeights":
        """The weights of `block`, with attention's query_scale (1/sqrt(D)) folded into the query columns."""
        attn, mlp = block.attn, block.mlp
        attn_w, attn_b = _fold(block.ln_1, attn.c_attn.weight.data, attn.c_attn.bias.data)
        scale = np.ones(attn_w.shape[1], dtype=attn_w.dtype)
        scale[:attn_w.shape[0]] = query_scale  # the query columns
        return cls(block.ln_1.eps, attn_w * scale, attn_b * scale,
                   attn.c_proj.weight.data, attn.c_proj.bias.data,
                   block.ln_2.eps, *_fold(block.ln_2, mlp.c_fc.weight.data, mlp.c_fc.bias.data),
                   mlp.c_proj.weight.data, mlp.c_proj.bias.data)


def _fold(ln, weight, bias):
    """LayerNorm ln followed by x @ weight + bias, as one matmul on the normalized x."""
    return kernels.fold_layer_norm(ln.weight.data, ln.bias.data, weight, bias)


class Decoder:
    """GPT.forward for one new position of each sequence of a batch on top of a KV cache.

    Generating token by token, the arithmetic for a single position is tiny, and autograd's
    per-op bookkeeping (a Tensor and a Function object per op, module calls, shape checks) costs
    more than it. This runs the same kernels as the Functions, on (B, C) arrays, with LayerNorm's
    scale and shift folded into the next matmul (LayerWeights). The folded weights are copies:
    build a new Decoder after changing the model's weights (generate builds one per call).
    """

    def __init__(self, model):
        t = model.transformer
        C, H = model.config.n_embd, model.config.n_head
        self.n_head = H
        self.wte, self.wpe = t.wte.weight.data, t.wpe.weight.data
        self.layers = [LayerWeights.of(block, 1.0 / math.sqrt(C // H)) for block in t.h]
        self.ln_f_eps = t.ln_f.eps
        self.head_w, self.head_b = _fold(t.ln_f, self.wte.T, None)  # (C, V), (V,)

    def logits(self, tokens, cache) -> np.ndarray:
        """tokens (B,), which go at position cache.length of each row -> logits (B, V) of the
        position after them."""
        tokens = np.asarray(tokens, dtype=np.intp).reshape(-1)
        n = cache.length
        if n >= cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} positions; {n + 1} requested")
        B, H = len(tokens), self.n_head
        x = self.wte[tokens] + self.wpe[n]  # (B, C)
        C = x.shape[1]
        for i, w in enumerate(self.layers):
            qkv = kernels.linear(kernels.normalize(x, w.eps_1)[0], w.attn_w, w.attn_b)  # (B, 3C)
            q, k, v = qkv.reshape(B, 3, H, 1, C // H).transpose(1, 0, 2, 3, 4)  # each (B, H, 1, D)
            keys, values = cache.write(i, n, k, v)  # (B, H, n + 1, D)
            y, _ = kernels.attention_forward(q, keys, values, causal=False, scaled=True)  # all keys are in the past
            x = x + kernels.linear(y.reshape(B, C), w.proj_w, w.proj_b)  # the heads side by side
            x = x + kernels.linear(kernels.gelu(kernels.linear(kernels.normalize(x, w.eps_2)[0], w.fc_w, w.fc_b)), w.out_w, w.out_b)
        cache.advance(1)
        return kernels.linear(kernels.normalize(x, self.ln_f_eps)[0], self.head_w, self.head_b)  # (B, V)


def refill_keep(window: int) -> int:
    """How many of the latest ids a full context window restarts from (see NextLogits)."""
    return max(1, window - max(1, window // 4))


class NextLogits:
    """The logits of the next position for a batch of equally long sequences, one new token each
    call, with the KV cache and the window policy.

    The context window: the model reads at most n_positions ids, with learned positions 0, 1, ...
    so a KV cache cannot slide along a longer text (every cached key would need a new position).
    Instead, when the next step would not fit, the window restarts from the last 3/4 of it
    (`refill_keep`): one forward pass over those ids refills the cache, and the next quarter window
    of tokens costs one position each again. A prompt that fills the window is read whole for the
    first step (its last n_positions ids, as in training) and the cache starts from its last 3/4,
    so a line completion after a long prompt needs no refill. So the context of every step
    is between 3/4 and all of the window, never less (but for a shorter prompt), and recomputing
    costs a pass every quarter window, not every token.
    use_cache=False computes every step from scratch over the very same context (the reference the
    tests compare the cache against: both give the same tokens), at the cost of a full forward
    pass per token.
    """

    def __init__(self, model, use_cache: bool = True):
        self.model, self.use_cache = model, use_cache
        self.window = model.config.n_positions
        self.decoder = Decoder(model) if use_cache else None
        self.cache = None
        self.start = None  # the context of the next step is rows[i][start:]

    def __call__(self, rows: list, parents=None) -> np.ndarray:
        """rows: B id lists of one length, each one id longer than at the last call (except the
        first); parents: which row of the last call each continues (None: the same rows) ->
        logits (B, V)."""
        n = len(rows[0])
        if self.start is None:  # the first step
            if n < self.window:
                self.start = 0
                return self._refill(rows)
            # A prompt that fills the window: the first step reads the whole window, as in training;
            # the cache starts from its last 3/4, so the steps after it need no refill.
            self.start = n - refill_keep(self.window)
            self._refill(rows)
            return self.model(np.array([r[n - self.window:] for r in rows])).data[:, -1]
        if n - self.start > self.window:  # full: restart the window from its last 3/4
            self.start = n - refill_keep(self.window)
            return self._refill(rows)
        if self.cache is None:
            return self.model(np.array([r[self.start:] for r in rows])).data[:, -1]
        if parents is not None:
            self.cache.reorder(parents)
        return self.decoder.logits([r[-1] for r in rows], self.cache)

    def _refill(self, rows):
        self.cache = self.model.new_cache(len(rows)) if self.use_cache else None
        return self.model(np.array([r[self.start:] for r in rows]), self.cache).data[:, -1]


# ----------------------------------------------------------------------------- generate
@no_grad()
def generate(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
             seed=None, stop=None, use_cache: bool = True, *, num_beams: int = 1, length_penalty: float = 0.0,
             num_return_sequences: int = 1, repetition_penalty: float = 1.0, no_repeat_ngram_size: int = 0,
             tokenizer=None, output_scores: bool = False, constraints=None):
    """Continue the id sequence `ids` (1-D) by up to `max_new_tokens` ids (a hard cap).

    Returns prompt + completion (a list of ids); with num_return_sequences > 1, a list of such
    lists, best first; with output_scores, a list of `Sequence`s (ids, logprob, score) instead.
    No suggestion (with constraints, when no completion reached its stop): the prompt alone, or
    a shorter list (maybe empty) of lists or Sequences.

    num_beams 1: greedy (temperature 0) or sampling (temperature, top_k, top_p, seed).
    num_beams N > 1: beam search (tinytorch.beam_search), the N beams one batch of N over the KV
    cache; temperature, top_k, top_p and seed do not apply. length_penalty 0 ranks completions by
    log-probability (transformers' default, 1, ranks by the mean per id, which a character
    model's loops win: benchmarks/completion.py).
    stop: "line", "block", "word", or a list of strings and id sequences (see tinytorch.stopping);
    all but id sequences need `tokenizer` (a CharTokenizer). <pad> and <unk> are never generated.
    repetition_penalty, no_repeat_ngram_size: the repetition guard, as transformers defines them.
    constraints: what a code editor never suggests (True for all of tinytorch.code_constraints'
    rules, or a CodeConstraints choosing them; needs `tokenizer`); None: off.
    use_cache=False recomputes the whole context for every token (see NextLogits): the same ids.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p, num_beams, num_return_sequences, length_penalty,
                   repetition_penalty, no_repeat_ngram_size)
    constraints = CodeConstraints.of(constraints)
    if constraints is not None and tokenizer is None:
        raise ValueError("code constraints read the text: generate(..., tokenizer=tokenizer)")
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if not ids:
        raise ValueError("generation needs a prompt of at least one token")
    vocab = model.config.vocab_size
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt ids must lie in [0, {vocab})")
    never = (tokenizer.pad_id, tokenizer.unk_id) if tokenizer is not None else (PAD_ID, UNK_ID)
    if len(set(never) & set(range(vocab))) >= vocab:
        raise ValueError(f"a vocabulary of {vocab} holds nothing but <pad> and <unk>: nothing to generate")
    guard = Guard(never, repetition_penalty, no_repeat_ngram_size)
    prompt_text = tokenizer.decode(ids) if tokenizer is not None else ""
    stopper = StopCondition(stop, prompt_text, tokenizer is not None)
    chars = [tokenizer.decode([i]) for i in range(vocab)] if stopper.needs_text or constraints else None
    rules = Rules(stopper, prompt_text, chars, constraints)
    was_training = model.training
    model.eval()
    try:
        logits_of = NextLogits(model, use_cache)
        if num_beams > 1:
            found = beam_search(logits_of, guard, rules, chars, ids, max_new_tokens, num_beams, length_penalty,
                                num_return_sequences)
        else:
            found = _sample(logits_of, guard, rules, chars, ids, max_new_tokens, temperature, top_k, top_p,
                            np.random.default_rng(seed), output_scores)
    finally:
        model.train(was_training)
    if output_scores:
        return found
    if num_return_sequences == 1:
        return found[0].ids if found else ids
    return [s.ids for s in found]


def _sample(logits_of, guard, rules, chars, ids, max_new_tokens, temperature, top_k, top_p, rng,
            scored: bool = True) -> list:
    """Greedy (temperature 0) or sampled decoding of one sequence (its logprob summed if
    `scored`): [the Sequence], or [] when the rules offer it not (tinytorch.code_constraints)."""
    ids, prompt_len = list(ids), len(ids)
    text, logprob = "", 0.0
    for step in range(max_new_tokens):
        logits = rules.ban(guard(logits_of([ids])[0], ids), text)
        if rules.on is not None and np.isneginf(logits).all():  # every next character banned
            return []
        probs = next_token_probs(logits, temperature, top_k, top_p)
        token = int(np.argmax(probs)) if temperature == 0 else sample(rng, probs)
        if scored:
            logprob += float(log_softmax(logits)[token])
        ids.append(token)
        if chars is not None:
            text += chars[token]
        keep = rules.end(ids, step + 1, text)
        if keep is not None:
            offered = rules.offered(text[:keep])
            return [Sequence(ids[:prompt_len + keep], logprob, logprob)] if offered else []
    if max_new_tokens and rules.at_cap(text) == "drop":
        return []
    return [Sequence(ids, logprob, logprob)]
