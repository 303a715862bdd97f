"""The pieces of a training loop that pretraining and fine-tuning share."""

from __future__ import annotations

import math

import numpy as np

from .nn import functional as F
from .optim import clip_grad_norm_


def loss_and_backward(model, x: np.ndarray, y: np.ndarray, ignore_index: int = -100) -> float:
    """The mean cross-entropy of model(x) against targets y, (B, T) each, with its gradient
    added to every parameter's .grad; returns the loss, a float. A GPT's forward shards the batch
    over tinytorch's threads by itself (see tinytorch.parallel)."""
    loss = F.cross_entropy(model(x), y, ignore_index=ignore_index)
    loss.backward()
    return loss.item()


class DivergenceError(FloatingPointError):
    """The loss or gradient stopped being finite. Raised before the optimizer step, so the
    weights are still those of the last good step."""


def sample_batch(ids: np.ndarray, batch_size: int, context: int, rng: np.random.Generator):
    """Random windows of a token array: inputs x (B, T) and the next ids y (B, T).

    T is `context`, or less when the text is shorter. Reproducible: the windows depend only on
    the state of `rng`, which a trainer saves to resume the same sequence of batches.
    """
    ids = np.asarray(ids)
    T = min(context, len(ids) - 1)
    if T < 1:
        raise ValueError("training text needs at least 2 tokens")
    starts = rng.integers(0, len(ids) - T, size=batch_size)
    windows = ids[starts[:, None] + np.arange(T + 1)]  # (B, T + 1)
    return windows[:, :-1], windows[:, 1:]


def train_step(model, optimizer, x, y, max_grad_norm: float | None = 1.0, step: int | None = None):
    """One step: forward, cross-entropy, backward, clip, update. Returns (loss, gradient norm).

    A non-finite loss or gradient raises DivergenceError and leaves the weights untouched. The
    model's forward splits the batch over tinytorch's threads by itself (tinytorch.parallel), as
    it does in the plain loop `loss = F.cross_entropy(model(x), y); loss.backward()`.
    """
    optimizer.zero_grad()
    with np.errstate(over="ignore", invalid="ignore"):  # a blow-up is reported below, in words
        value = loss_and_backward(model, np.asarray(x), np.asarray(y))
    params = [p for group in optimizer.param_groups for p in group["params"]]
    norm = clip_grad_norm_(params, max_grad_norm if max_grad_norm else math.inf)
    check_finite(value, norm, optimizer.param_groups[0]["lr"], step)
    optimizer.step()
    return value, norm


def check_finite(loss: float, norm: float, lr: float, step: int | None = None) -> None:
    """Raise DivergenceError, saying what to do, when the loss or the gradient norm is not finite."""
    if not (math.isfinite(loss) and math.isfinite(norm)):
        where = f" at step {step}" if step is not None else ""
        raise DivergenceError(
            f"training diverged{where}: loss {loss}, gradient norm {norm}. "
            f"The learning rate ({lr:g}) is most likely too high: lower it (by 3-10x) and try again."
        )
