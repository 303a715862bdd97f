"""The Copilot demo's fine-tune recipe: what Start runs, and what benchmarks/finetune_heldout.py
measures, as one function, so that the figures in the README are the page's own.

The defaults were chosen by the held-out figure (bits per character on the part of each text the
fine-tune never sees), never by the figure on the training text, which rewards memorizing: see
benchmarks/README.md, "Fine-tuning: held-out figures".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tinytorch.evaluate import text_metrics
from tinytorch.training import sample_batch

from . import training
from .heldout import MAX_SCORED_CHARS, Split

STEPS, STEPS_RANGE = 100, (10, 300)
LR_RANGE = (1e-5, 0.1)  # the default depends on the model: see recommended_lr
BATCH, BATCH_RANGE = 8, (1, 64)
CONTEXT = 64  # characters per training window: an identifier and the line or two before it
SEED = 0  # of the batches: the same text and settings give the same fine-tune


def recommended_lr(config) -> float:
    """The default learning rate for fine-tuning a model of this width: 1e-4 up to n_embd 96 (the
    copilot and copilot-tiny), then as 1/n_embd (wider layers take bigger steps from the same
    rate: 5e-5 for copilot-large). Chosen by the held-out fall on many texts; higher rates
    memorize the training part and lose the rest of the file."""
    return round(1e-4 * min(1.0, 96 / config.n_embd), 7)


@dataclass(frozen=True)
class Recipe:
    lr: float
    steps: int = STEPS
    batch_size: int = BATCH
    context: int = CONTEXT
    weight_decay: float = 0.0
    keep_best: bool = True  # end with the weights of the best held-out evaluation (early stopping)


def held_out_loss(tokenizer, text: str):
    """model -> its loss (nats per character) on the first MAX_SCORED_CHARS of `text`."""
    scored = text[:MAX_SCORED_CHARS]
    return lambda model: text_metrics(model, tokenizer, [scored])["loss"]


def run(model, tokenizer, split: Split, recipe: Recipe, should_stop=lambda: False, lock=None):
    """Fine-tune `model` in place on split.train with `recipe`, measuring split.held_out as it
    goes (when there is one); yields demos.training.Progress."""
    ids = np.array(tokenizer.encode(split.train))
    context = min(recipe.context, model.config.n_positions, len(ids) - 1)
    rng = np.random.default_rng(SEED)
    held_out = held_out_loss(tokenizer, split.held_out) if split.has_held_out else None
    yield from training.train(model, lambda: sample_batch(ids, recipe.batch_size, context, rng), recipe.steps,
                              recipe.lr, recipe.weight_decay, should_stop=should_stop, lock=lock,
                              held_out=held_out, keep_best=recipe.keep_best)
