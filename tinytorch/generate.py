"""Sampling from a GPT: greedy, temperature, top-k, top-p (nucleus), stop sequences, KV cache."""

from __future__ import annotations

import math

import numpy as np

from .tensor import no_grad


def check_sampling(max_new_tokens, temperature, top_k, top_p) -> None:
    """Raise ValueError, with the reason, for arguments generation cannot honour."""
    if not isinstance(max_new_tokens, (int, np.integer)) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an integer >= 0, got {max_new_tokens!r}")
    if not isinstance(temperature, (int, float)) or not math.isfinite(temperature) or temperature < 0:
        raise ValueError(f"temperature must be a finite number >= 0 (0 = greedy), got {temperature!r}")
    if top_k is not None and (not isinstance(top_k, (int, np.integer)) or top_k < 1):
        raise ValueError(f"top_k must be a positive integer or None, got {top_k!r}")
    if top_p is not None and (not isinstance(top_p, (int, float)) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p must be in (0, 1] or None, got {top_p!r}")


def next_token_probs(logits: np.ndarray, temperature: float, top_k=None, top_p=None) -> np.ndarray:
    """logits (V,) -> the distribution to sample the next id from (V,), float64.

    Temperature divides the logits; top-k keeps the k most likely ids; top-p keeps the fewest
    most likely ids whose probabilities add up to at least p. Temperature 0 puts all mass on the
    argmax (greedy).
    """
    logits = logits.astype(np.float64)
    if temperature == 0:
        probs = np.zeros_like(logits)
        probs[np.argmax(logits)] = 1.0
        return probs
    logits = logits / temperature
    if top_k is not None and top_k < len(logits):
        kth = np.partition(logits, -top_k)[-top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - np.maximum.reduce(logits))
    probs /= np.add.reduce(probs)
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


def _ends_with_stop(ids: list, stops: list) -> bool:
    return any(len(ids) >= len(s) and ids[-len(s):] == s for s in stops)


class Decoder:
    """GPT.forward for one new position on top of a KV cache (batch 1), on raw numpy arrays.

    Generating token by token, the arithmetic for a single position is tiny, and autograd's
    per-op bookkeeping (a Tensor and a Function object per op, module calls, shape checks) costs
    more than it. This is the same computation as the modules' (tests check that its logits
    equal GPT.forward's) on (C,) vectors, with nothing else, and with two constant folds made
    once per generation, since every op on a vector this small costs about a microsecond:
    - LayerNorm's scale and shift go into the matmul that follows it:
      (xhat * w + b) @ W + c = xhat @ (w[:, None] * W) + (b @ W + c);
    - attention's 1/sqrt(D) goes into the query columns of c_attn.
    The folded weights are copies: build a new Decoder after changing the model's weights
    (generate builds one per call).
    """

    def __init__(self, model):
        t = model.transformer
        C, H = model.config.n_embd, model.config.n_head
        scale = np.ones(3 * C, dtype=t.wte.weight.dtype)
        scale[:C] = 1.0 / math.sqrt(C // H)  # the query columns
        self.n_head = H
        self.wte, self.wpe = t.wte.weight.data, t.wpe.weight.data
        self.layers = []
        for b in t.h:
            attn_w, attn_b = _fold(b.ln_1, b.attn.c_attn.weight.data, b.attn.c_attn.bias.data)
            self.layers.append((
                b.ln_1.eps, attn_w * scale, attn_b * scale, b.attn.c_proj.weight.data, b.attn.c_proj.bias.data,
                b.ln_2.eps, *_fold(b.ln_2, b.mlp.c_fc.weight.data, b.mlp.c_fc.bias.data),
                b.mlp.c_proj.weight.data, b.mlp.c_proj.bias.data,
            ))
        self.ln_f_eps = t.ln_f.eps
        self.head_w, self.head_b = _fold(t.ln_f, self.wte.T, None)  # (C, V), (V,)

    def logits(self, token: int, cache) -> np.ndarray:
        """Logits (V,) of the position after `token`, which goes at position cache.length."""
        n = cache.length
        if n >= cache.max_len:
            raise ValueError(f"KV cache holds {cache.max_len} positions; {n + 1} requested")
        H = self.n_head
        x = self.wte[token] + self.wpe[n]  # (C,)
        for i, (eps1, attn_w, attn_b, proj_w, proj_b, eps2, fc_w, fc_b, out_w, out_b) in enumerate(self.layers):
            q, k, v = (_normalize(x, eps1) @ attn_w + attn_b).reshape(3, H, 1, -1)  # each (H, 1, D)
            keys, values = cache.keys[i][0], cache.values[i][0]  # (H, max_len, D)
            keys[:, n:n + 1] = k
            values[:, n:n + 1] = v
            scores = q @ keys[:, :n + 1].swapaxes(-1, -2)  # (H, 1, n + 1): no mask, all are in the past
            weights = np.exp(scores - np.maximum.reduce(scores, axis=-1, keepdims=True))
            weights /= np.add.reduce(weights, axis=-1, keepdims=True)
            y = (weights @ values[:, :n + 1]).reshape(-1)  # (C,), the heads side by side
            x = x + (y @ proj_w + proj_b)
            x = x + (_gelu(_normalize(x, eps2) @ fc_w + fc_b) @ out_w + out_b)
        cache.advance(1)
        return _normalize(x, self.ln_f_eps) @ self.head_w + self.head_b  # (V,)


def _fold(ln, weight, bias):
    """LayerNorm ln followed by x @ weight + bias, as one matmul on the normalized x."""
    w, b = ln.weight.data, ln.bias.data
    folded_bias = b @ weight if bias is None else b @ weight + bias
    return w[:, None] * weight, folded_bias


def _normalize(x, eps):
    """(x - mean) / std of a vector; Python floats for the scalars keep x's float32."""
    centered = x - float(np.add.reduce(x)) / x.size
    centered *= 1.0 / math.sqrt(float(centered @ centered) / x.size + eps)
    return centered


def _gelu(x):
    """GPT-2's tanh GELU as x * sigmoid(2u), as functions.GELU (the clip only avoids overflow)."""
    minus_2u = x * (x * x * (-2.0 * 0.044715 * _SQRT_2_OVER_PI) - 2.0 * _SQRT_2_OVER_PI)
    return x / (1.0 + np.exp(np.minimum(minus_2u, 80.0)))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


def refill_keep(window: int) -> int:
    """How many of the latest ids a full context window restarts from (see generate)."""
    return max(1, window - max(1, window // 4))


@no_grad()
def generate(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
             seed=None, stop=None, use_cache: bool = True) -> list:
    """Continue the id sequence `ids` (1-D) by up to `max_new_tokens`; return prompt + new ids.

    stop: id sequences (lists); generation ends once the output ends with one (it is kept).

    The context window: the model reads at most n_positions ids, with learned positions 0, 1, ...
    so a KV cache cannot slide along a longer text (every cached key would need a new position).
    Instead, when the next step would not fit, the window restarts from the last 3/4 of it
    (`refill_keep`): one forward pass over those ids refills the cache, and the next quarter window
    of tokens costs one position each again. So the context of every step is between 3/4 and all
    of the window, never less, and recomputing costs a pass every quarter window, not every token.
    use_cache=False computes every step from scratch over the very same context (the reference the
    tests compare the cache against: both give the same tokens), at the cost of a full forward
    pass per token.
    """
    check_sampling(max_new_tokens, temperature, top_k, top_p)
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if not ids:
        raise ValueError("generation needs a prompt of at least one token")
    vocab = model.config.vocab_size
    if min(ids) < 0 or max(ids) >= vocab:
        raise ValueError(f"prompt ids must lie in [0, {vocab})")
    stops = [[int(i) for i in s] for s in (stop or []) if len(s)]
    rng = np.random.default_rng(seed)
    window = model.config.n_positions
    start = max(0, len(ids) - window)  # the context of the next step is ids[start:]
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache() if use_cache else None
        decoder = Decoder(model) if use_cache else None
        logits = model(np.array([ids[start:]]), cache).data[0, -1]  # (V,) for the next position
        for step in range(max_new_tokens):
            if step:
                if len(ids) - start > window:  # full: restart the window from its last 3/4
                    start = len(ids) - refill_keep(window)
                    cache = model.new_cache() if use_cache else None
                    logits = model(np.array([ids[start:]]), cache).data[0, -1]
                elif cache is not None:  # one new position on top of the cached ones
                    logits = decoder.logits(ids[-1], cache)
                else:
                    logits = model(np.array([ids[start:]])).data[0, -1]
            probs = next_token_probs(logits, temperature, top_k, top_p)
            token = int(np.argmax(probs)) if temperature == 0 else sample(rng, probs)
            ids.append(token)
            if _ends_with_stop(ids, stops):
                break
    finally:
        model.train(was_training)
    return ids
