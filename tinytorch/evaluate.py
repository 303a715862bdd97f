"""How good is a character model on some text: bits per character, next-character accuracy, and
identifier completion (the Copilot's job: type 3 characters of a name, does it finish the name?).
"""

from __future__ import annotations

import math
import re

import numpy as np

from .kernels import log_softmax
from .tensor import no_grad


def _windows(ids: np.ndarray, context: int):
    """Cover every target position once with windows of `context` inputs.

    Windows overlap by half, so that (past the first) each scored target sees at least half a
    window of context rather than restarting from nothing at every window boundary.
    Yields (start, first_scored) with inputs ids[start:start+context].
    """
    n_targets = len(ids) - 1
    if n_targets <= context:
        yield 0, 0
        return
    stride = max(1, context // 2)
    start, scored = 0, 0
    while scored < n_targets:
        start = min(start, n_targets - context)
        yield start, scored - start
        scored = start + context
        start += stride


def _window_logits(model, ids: np.ndarray, batch_size: int):
    """The model's logits over windows that cover every target of ids (see _windows), a batch of
    windows at a time: yields (logits (B, T, V), targets (B, T), [first scored position of each row],
    [each row's start]). The model is in eval mode while it runs."""
    context = model.config.n_positions
    was_training = model.training
    model.eval()
    try:
        windows = list(_windows(ids, context))
        length = min(context, len(ids) - 1)
        for i in range(0, len(windows), batch_size):
            chunk = windows[i:i + batch_size]
            x = np.stack([ids[s:s + length] for s, _ in chunk])          # (B, T)
            y = np.stack([ids[s + 1:s + 1 + length] for s, _ in chunk])  # (B, T)
            yield model(x).data, y, [first for _, first in chunk], [s for s, _ in chunk]  # (B, T, V)
    finally:
        model.train(was_training)


@no_grad()
def score(model, ids, batch_size: int = 32, progress=None) -> dict:
    """Sum of negative log-likelihood (nats), correct greedy next-char guesses and target count.
    progress: called with the number of characters scored after each batch of windows."""
    ids = np.asarray(ids, dtype=np.int64)
    total_nll, correct, count = 0.0, 0, 0
    if len(ids) < 2:
        return {"nll": 0.0, "correct": 0, "count": 0}
    for logits, y, firsts, _ in _window_logits(model, ids, batch_size):
        logp = log_softmax(logits)
        length = y.shape[1]
        for row, first in enumerate(firsts):
            targets = y[row, first:]
            total_nll -= float(logp[row, np.arange(first, length), targets].sum())
            correct += int((logits[row, first:].argmax(-1) == targets).sum())
            count += len(targets)
        if progress is not None:
            progress(sum(length - first for first in firsts))
    return {"nll": total_nll, "correct": correct, "count": count}


@no_grad()
def next_logits(model, ids, batch_size: int = 32) -> np.ndarray:
    """The model's logits for the character after each prefix of ids: (len(ids), V), row t read
    after ids[:t + 1] (the last row predicts past the end), every row from one forward pass over
    windows of n_positions that overlap by half (as score's): each row sees between half a window
    and a whole one of the text before it."""
    ids = np.asarray(ids, dtype=np.int64)
    out = None
    extended = np.append(ids, 0)  # a stand-in target after the end: the windows then read every id
    for logits, _, firsts, starts in _window_logits(model, extended, batch_size):
        if out is None:
            out = np.empty((len(ids), logits.shape[-1]), dtype=logits.dtype)
        for row, (first, start) in enumerate(zip(firsts, starts)):
            out[start + first:start + logits.shape[1]] = logits[row, first:]
    return out


def text_metrics(model, tokenizer, texts, batch_size: int = 32, progress=None) -> dict:
    """Bits per character and next-character accuracy over `texts` (each scored on its own).
    progress: called with each count of characters scored (a progress bar's update)."""
    totals = {"nll": 0.0, "correct": 0, "count": 0}
    for text in texts:
        for key, value in score(model, tokenizer.encode(text), batch_size, progress).items():
            totals[key] += value
    n = max(totals["count"], 1)
    return {
        "bits_per_char": totals["nll"] / n / math.log(2),
        "loss": totals["nll"] / n,
        "next_char_accuracy": totals["correct"] / n,
        "characters": totals["count"],
    }


IDENTIFIER = re.compile(r"(?<![A-Za-z0-9_])[A-Za-z_][A-Za-z0-9_]{5,}")


def identifier_cases(texts, limit: int = 200, typed: int = 3, seed: int = 0) -> list[tuple[str, str]]:
    """(text before and including the typed prefix, rest of the identifier), for identifiers of 6+
    characters; a fixed random sample of at most `limit`, so that runs compare like with like."""
    cases = []
    for text in texts:
        for m in IDENTIFIER.finditer(text):
            cases.append((text[:m.start() + typed], m.group()[typed:]))
    if len(cases) > limit:
        pick = np.random.default_rng(seed).choice(len(cases), limit, replace=False)
        cases = [cases[i] for i in sorted(pick)]
    return cases


def identifier_completion(model, tokenizer, texts, limit: int = 200) -> float:
    """Share of sampled identifiers whose rest greedy decoding types exactly, from 3 typed chars."""
    cases = identifier_cases(texts, limit)
    if not cases:
        return float("nan")
    right = 0
    for prefix, rest in cases:
        ids = tokenizer.encode(prefix[-model.config.n_positions:])
        out = model.generate(ids, len(rest), temperature=0.0)
        right += tokenizer.decode(out[len(ids):]) == rest
    return right / len(cases)
