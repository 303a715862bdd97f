"""The fine-tuning loop of the demos: tinytorch's own train_step, as a generator that yields
progress after every step, so the UI can draw the loss curve live and stop at any step.

With a held-out part (demos/heldout.py), the loop also measures the model on text it never
trains on, every few steps, and by default ends with the weights of its best such evaluation
(early stopping): past that step the model memorizes its training text and gets worse on the
rest of the file, which is the lesson the curve draws.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

from tinytorch.optim import AdamW, cosine_lr
from tinytorch.training import DivergenceError, train_step

EVAL_EVERY = 10  # steps between held-out evaluations: 10 points on a 100-step curve


@dataclass
class Progress:
    step: int  # steps done (0: the held-out evaluation before the first step)
    steps: int  # steps asked for
    loss: float  # of this step's batch (nan at step 0)
    lr: float
    elapsed: float  # seconds since the first step started
    held_out: float | None = None  # the held-out loss (nats) measured at this step, if it was
    best_step: int | None = None  # the step of the lowest held-out loss so far (0: the weights before)
    best_held_out: float | None = None  # that loss

    @property
    def remaining(self) -> float:
        """Seconds left, at the average pace so far."""
        return self.elapsed / self.step * (self.steps - self.step) if self.step else math.nan


def lr_at(step: int, lr: float, steps: int) -> float:
    """A short warmup, then cosine down to lr/10: the usual recipe, shrunk to a few hundred steps.
    Warmup keeps the first updates (with Adam's fresh, noisy moments) from kicking a pretrained
    model out of its basin; the decay lets the last steps settle instead of bouncing."""
    return cosine_lr(step, lr, warmup_steps=max(1, steps // 20), total_steps=steps, min_lr=lr / 10)


class BestWeights:
    """The held-out evaluations of a run and a copy of the weights at the lowest one."""

    def __init__(self, held_out: Callable):
        self.held_out = held_out
        self.step, self.loss, self.weights = 0, math.inf, None

    def evaluate(self, model, step: int) -> float:
        loss = self.held_out(model)
        if loss < self.loss:
            self.step, self.loss = step, loss
            self.weights = {name: value.copy() for name, value in model.state_dict().items()}
        return loss


def train(model, next_batch, steps: int, lr: float, weight_decay: float = 0.0, max_grad_norm: float = 1.0,
          should_stop=lambda: False, lock=None, held_out: Callable | None = None, eval_every: int = EVAL_EVERY,
          keep_best: bool = True):
    """Train `model` in place for `steps` steps of AdamW on next_batch() -> (x, y); yield Progress.

    should_stop() is checked before each step: stopping keeps every step taken so far. If the
    loss stops being finite, the weights from before this run come back and DivergenceError
    (whose message names the step and says to lower the learning rate) is raised.
    lock: held around each step (see demos.common.FairLock), released between steps.
    held_out: model -> its loss on the held-out part (nats), measured before the first step
    (yielded as step 0), every `eval_every` steps and at the last; with keep_best the run ends
    with the weights of the lowest (the last Progress's best_step says which).
    """
    lock = lock or nullcontext()
    with lock:
        before = {name: value.copy() for name, value in model.state_dict().items()}
        optimizer = AdamW(model.optimizer_groups(weight_decay), lr=lr)
        best = BestWeights(held_out) if held_out else None
        if best:
            first = best.evaluate(model, 0)
    model.train()
    start = time.perf_counter()
    if best:
        yield Progress(0, steps, math.nan, 0.0, 0.0, first, 0, first)
    try:
        for step in range(1, steps + 1):
            if should_stop():
                break
            x, y = next_batch()
            rate = lr_at(step - 1, lr, steps)
            optimizer.set_lr(rate)
            with lock:
                loss, _ = train_step(model, optimizer, x, y, max_grad_norm, step=step)
                measured = best.evaluate(model, step) if best and (step % eval_every == 0 or step == steps) else None
            yield Progress(step, steps, loss, rate, time.perf_counter() - start, measured,
                           best and best.step, best and best.loss)
        if best and keep_best and best.weights is not None:
            with lock:
                model.load_state_dict(best.weights)
    except DivergenceError:
        with lock:
            model.load_state_dict(before)
        raise
    finally:
        model.zero_grad()  # the gradients are as large as the weights; the session keeps only those
        model.eval()
