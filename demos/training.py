"""The fine-tuning loop of the demos: tinytorch's own train_step, as a generator that yields
progress after every step, so the UI can draw the loss curve live and stop at any step.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from dataclasses import dataclass

from tinytorch.optim import AdamW, cosine_lr
from tinytorch.training import DivergenceError, train_step


@dataclass
class Progress:
    step: int  # steps done
    steps: int  # steps asked for
    loss: float  # of this step's batch
    lr: float
    elapsed: float  # seconds since the first step started

    @property
    def remaining(self) -> float:
        """Seconds left, at the average pace so far."""
        return self.elapsed / self.step * (self.steps - self.step) if self.step else math.nan


def lr_at(step: int, lr: float, steps: int) -> float:
    """A short warmup, then cosine down to lr/10: the usual recipe, shrunk to a few hundred steps.
    Warmup keeps the first updates (with Adam's fresh, noisy moments) from kicking a pretrained
    model out of its basin; the decay lets the last steps settle instead of bouncing."""
    return cosine_lr(step, lr, warmup_steps=max(1, steps // 20), total_steps=steps, min_lr=lr / 10)


def train(model, next_batch, steps: int, lr: float, weight_decay: float = 0.0, max_grad_norm: float = 1.0,
          should_stop=lambda: False, lock=None):
    """Train `model` in place for `steps` steps of AdamW on next_batch() -> (x, y); yield Progress.

    should_stop() is checked before each step: stopping keeps every step taken so far. If the
    loss stops being finite, the weights from before this run come back and DivergenceError
    (whose message names the step and says to lower the learning rate) is raised.
    lock: held around each step (see demos.common.FairLock), released between steps.
    """
    lock = lock or nullcontext()
    with lock:
        before = {name: value.copy() for name, value in model.state_dict().items()}
        optimizer = AdamW(model.optimizer_groups(weight_decay), lr=lr)
    model.train()
    start = time.perf_counter()
    try:
        for step in range(steps):
            if should_stop():
                return
            x, y = next_batch()
            rate = lr_at(step, lr, steps)
            optimizer.set_lr(rate)
            with lock:
                loss, _ = train_step(model, optimizer, x, y, max_grad_norm, step=step + 1)
            yield Progress(step + 1, steps, loss, rate, time.perf_counter() - start)
    except DivergenceError:
        with lock:
            model.load_state_dict(before)
        raise
    finally:
        model.zero_grad()  # the gradients are as large as the weights; the session keeps only those
        model.eval()
