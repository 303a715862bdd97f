"""Look inside: the attention weights of one layer over a prompt, and the next-character
probabilities after it, both from one forward pass of the model itself (GPT.forward with
output_attentions=True hands back the weights its attention computed)."""

from __future__ import annotations

import numpy as np

from tinytorch import no_grad


@no_grad()
def forward(model, ids):
    """One pass over the last n_positions of `ids` (1-D): (logits (T, V), [(H, T, T)] per layer)."""
    ids = np.asarray(ids)[-model.config.n_positions:]
    logits, attentions = model(ids[None, :], output_attentions=True)
    return logits.data[0], [a[0] for a in attentions]


def attention_weights(model, ids, layer: int) -> np.ndarray:
    """(H, T, T): row t holds how much position t attends to each position <= t (rows sum to 1)."""
    return forward(model, ids)[1][layer]


def top_probs(logits: np.ndarray, tokenizer, top: int = 10) -> dict[str, float]:
    """The `top` most likely next characters after logits (V,) and their probabilities, most likely first."""
    logits = logits.astype(np.float64)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    order = np.argsort(-probs)[:top]
    return {visible(tokenizer.decode([i]) or "<pad>"): float(probs[i]) for i in order}


def next_char_probs(model, tokenizer, ids, top: int = 10) -> dict[str, float]:
    """The `top` most likely next characters and their probabilities, most likely first."""
    return top_probs(forward(model, ids)[0][-1], tokenizer, top)


def visible(char: str) -> str:
    """A character as a label: space and newline made visible."""
    return {" ": "␣ (space)", "\n": "⏎ (newline)"}.get(char, char)
