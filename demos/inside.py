"""Look inside: the attention weights of one layer over a prompt, and the next-character
probabilities after it.

The model's own attention computes its weights inside a fused function and keeps them to
itself; here they are recomputed in plain numpy from the layer's parameters (ln_1, then c_attn,
then softmax(q k^T / sqrt(D)) with the future masked out), exactly as GPT-2 defines them. The
tests check that these weights, times the values, give back the layer's attention output.
"""

from __future__ import annotations

import numpy as np

from tinytorch import no_grad


def _layer_norm(x, weight, bias, eps):
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


@no_grad()
def block_input(model, ids, layer: int) -> np.ndarray:
    """The residual stream entering block `layer`: (T, C), for a 1-D array of ids."""
    t = model.transformer
    ids = np.asarray(ids)[None, :]  # (1, T)
    x = t.wte(ids) + t.wpe(np.arange(ids.shape[1]))  # (1, T, C)
    for block in list(t.h)[:layer]:
        x = block(x)
    return x.data[0]


def qkv_heads(model, x: np.ndarray, layer: int):
    """q, k, v of block `layer` for its input x (T, C): three arrays (H, T, D)."""
    block = model.transformer.h[layer]
    h = _layer_norm(x, block.ln_1.weight.data, block.ln_1.bias.data, block.ln_1.eps)
    qkv = h @ block.attn.c_attn.weight.data + block.attn.c_attn.bias.data  # (T, 3C)
    T, C3 = qkv.shape
    H = block.attn.n_head
    q, k, v = qkv.reshape(T, 3, H, C3 // 3 // H).transpose(1, 2, 0, 3)  # 3 x (H, T, D)
    return q, k, v


def attention_weights(model, ids, layer: int) -> np.ndarray:
    """(H, T, T): row t holds how much position t attends to each position <= t (rows sum to 1)."""
    ids = np.asarray(ids)[-model.config.n_positions:]
    q, k, _ = qkv_heads(model, block_input(model, ids, layer), layer)
    D = q.shape[-1]
    scores = q @ k.transpose(0, 2, 1) / np.sqrt(D)  # (H, T, T)
    T = scores.shape[-1]
    scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)  # no peeking ahead
    scores = scores - scores.max(-1, keepdims=True)
    weights = np.exp(scores)
    return weights / weights.sum(-1, keepdims=True)


@no_grad()
def next_char_probs(model, tokenizer, ids, top: int = 10) -> dict[str, float]:
    """The `top` most likely next characters and their probabilities, most likely first."""
    ids = np.asarray(ids)[-model.config.n_positions:]
    logits = model(ids[None, :]).data[0, -1].astype(np.float64)  # (V,)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:top]
    return {visible(tokenizer.decode([i]) or "<pad>"): float(probs[i]) for i in order}


def visible(char: str) -> str:
    """A character as a label: space and newline made visible."""
    return {" ": "␣ (space)", "\n": "⏎ (newline)"}.get(char, char)
