"""The loss curve of a training run as gr.LinePlot's frame, for both demos."""

from __future__ import annotations

import numpy as np
import pandas as pd


def curve_frame(curve, unit=None, average: bool = False) -> pd.DataFrame | None:
    """[(step, loss in nats)] as a frame of step, loss, series.

    unit: converts each loss (the Copilot speaks bits per character); none keeps nats.
    average: plot the batch losses ("batch loss") with a running average ("running average"),
    which reads better; otherwise one series, "loss".
    None when there is no curve: gradio 6.31's LinePlot, given an empty frame, draws no lines in
    any later update (a colour-scale bug), while None then data works."""
    if not curve:
        return None
    steps = [s for s, _ in curve]
    losses = [unit(l) if unit else l for _, l in curve]
    if not average:
        return pd.DataFrame({"step": steps, "loss": losses, "series": "loss"})
    losses = np.array(losses, dtype=float)
    smooth, running = [], 0.0
    for t, value in enumerate(losses, start=1):
        running = 0.8 * running + 0.2 * value
        smooth.append(running / (1 - 0.8**t))  # bias-corrected, as Adam does: no drag from a zero start
    return pd.DataFrame({
        "step": steps * 2,
        "loss": list(losses) + smooth,
        "series": ["batch loss"] * len(steps) + ["running average"] * len(steps),
    })
