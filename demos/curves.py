"""The loss curve of a training run as gr.LinePlot's frame, for both demos."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

BATCH, AVERAGE, HELD_OUT, KEPT = "batch loss", "running average", "held-out loss", "kept weights"
LOSS = "loss"  # the one series of a curve drawn without its average (Level 1's)
# Each plot's series and their colours: the Copilot's, and Level 1's
COPILOT_COLOURS = {BATCH: "#86efac", AVERAGE: "#16a34a", HELD_OUT: "#2563eb", KEPT: "#f59e0b"}
LEVEL1_COLOURS = {LOSS: "#16a34a"}
BITS = " bits/char"  # the unit both demos speak


def bits(nats: float) -> float:
    """A cross-entropy in bits per character, the unit the pages speak (curves, Compare, the cards)."""
    return nats / math.log(2)


def empty_frame(series=tuple(COPILOT_COLOURS), steps: int = 100) -> pd.DataFrame:
    """Axes with nothing drawn on them, over steps 0..steps: two rows for each of the plot's
    `series` whose loss is NaN, which the plot leaves out.

    For a plot that has drawn, gradio 6.31's LinePlot takes neither None nor a frame without rows:
    None throws `Cannot read properties of null (reading 'offsetWidth')` in the browser, and a
    frame without rows leaves every later update without lines (a colour-scale bug; a frame that
    lacks some series draws those in no colour). A plot that has not drawn yet starts from None:
    given this frame first, it draws no y-axis title afterwards."""
    return pd.DataFrame({"step": [0, steps] * len(series), "loss": math.nan,
                         "series": [name for name in series for _ in range(2)]})


def curve_frame(curve, unit=None, average: bool = False, held_out=None, kept_step: int | None = None
                ) -> pd.DataFrame:
    """[(step, loss in nats)] as a frame of step, loss, series.

    unit: converts each loss (the Copilot speaks bits per character); none keeps nats.
    average: plot the batch losses ("batch loss") with a running average ("running average"),
    which reads better; otherwise one series, "loss".
    held_out: [(step, loss in nats)] on the held-out part, a series of its own ("held-out loss").
    kept_step: a vertical line at that step ("kept weights"), across the plotted losses.
    Nothing to draw gives empty_frame(): axes alone."""
    if not curve and not held_out:
        return empty_frame() if average else empty_frame(tuple(LEVEL1_COLOURS))
    convert = unit or (lambda loss: loss)
    parts = []
    if curve:
        steps = [s for s, _ in curve]
        losses = np.array([convert(loss) for _, loss in curve], dtype=float)
        if not average:
            return pd.DataFrame({"step": steps, "loss": losses, "series": LOSS})
        smooth, running = [], 0.0
        for t, value in enumerate(losses, start=1):
            running = 0.8 * running + 0.2 * value
            smooth.append(running / (1 - 0.8**t))  # bias-corrected, as Adam does: no drag from a zero start
        parts += [(steps, losses, BATCH), (steps, smooth, AVERAGE)]
    if held_out:
        parts.append(([s for s, _ in held_out], [convert(loss) for _, loss in held_out], HELD_OUT))
    if kept_step is not None:
        drawn = [value for _, values, _ in parts for value in values]
        parts.append(([kept_step, kept_step], [min(drawn), max(drawn)], KEPT))
    return pd.DataFrame({
        "step": [s for steps, _, _ in parts for s in steps],
        "loss": [float(v) for _, values, _ in parts for v in values],
        "series": [name for steps, _, name in parts for _ in steps],
    })
