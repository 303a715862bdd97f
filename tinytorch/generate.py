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
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if top_p is not None and top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = order[: int(np.searchsorted(cumulative, top_p)) + 1]  # always at least one id
        kept = np.zeros_like(probs)
        kept[keep] = probs[keep]
        probs = kept / kept.sum()
    return probs


def _ends_with_stop(ids: list, stops: list) -> bool:
    return any(len(ids) >= len(s) and ids[-len(s):] == s for s in stops)


@no_grad()
def generate(model, ids, max_new_tokens: int, temperature: float = 1.0, top_k=None, top_p=None,
             seed=None, stop=None, use_cache: bool = True) -> list:
    """Continue the id sequence `ids` (1-D) by up to `max_new_tokens`; return prompt + new ids.

    stop: id sequences (lists); generation ends once the output ends with one (it is kept).
    use_cache: a KV cache makes each step cost one position. Once the sequence outgrows the
    context window, each step recomputes the last n_positions ids (positions are learned, so the
    cache cannot slide); both paths give the same tokens.
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
    was_training = model.training
    model.eval()
    try:
        cache = model.new_cache() if use_cache else None
        context = ids[-window:]
        logits = model(np.array([context]), cache).data[0, -1]  # (V,) for the next position
        for step in range(max_new_tokens):
            if step and cache is not None and cache.length < window:
                logits = model(np.array([ids[-1:]]), cache).data[0, -1]
            elif step:
                cache = None  # past the window: recompute it from here on
                logits = model(np.array([ids[-window:]])).data[0, -1]
            probs = next_token_probs(logits, temperature, top_k, top_p)
            token = int(np.argmax(probs)) if temperature == 0 else int(rng.choice(vocab, p=probs))
            ids.append(token)
            if _ends_with_stop(ids, stops):
                break
    finally:
        model.train(was_training)
    return ids
