"""trainer_state.json, read and checked value by value.

A resume trusts this file for where the run stands: which step it is at (and so which step folders
and metrics come after it), the best step (kept from pruning), the data position and the RNGs. A
file edited by hand or damaged on disk must not steer any of that: every value is checked for its
type, its range and its agreement with the folder it sits in, and a file that fails is a
ValueError naming the key, so that the resume passes the folder over for the newest one that loads.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from .run_files import step_number

# Each key a resume needs, and the JSON type it must have.
STATE_KEYS = {"step": int, "best_step": int, "best_val_loss": (int, float), "elapsed": (int, float),
              "interval": list, "model_config": dict, "data_rng": dict, "init_rng": dict, "optimizer": dict}
_JSON_NAMES = {int: "an integer", (int, float): "a number", list: "a list", dict: "an object"}


def read_trainer_state(folder: Path) -> dict:
    """trainer_state.json of step folder `folder`, every value checked (see check_values)."""
    path = folder / "trainer_state.json"
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: missing") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a JSON object, got {type(state).__name__}")
    for key, kind in STATE_KEYS.items():
        if key not in state:
            raise ValueError(f"{path}: missing {key!r}")
        if not _is(state[key], kind):
            raise ValueError(f"{path}: {key!r} is {_shown(state[key])}, expected {_JSON_NAMES[kind]}")
    problem = check_values(state, step_number(folder))
    if problem:
        raise ValueError(f"{path}: {problem}")
    return state


def check_values(state: dict, folder_step: int) -> str | None:
    """What is wrong with the values of a trainer state of step folder `folder_step`, or None."""
    step, best_step = state["step"], state["best_step"]
    if step != folder_step:
        return f"'step' is {_shown(step)}, but the folder is step {folder_step}"
    if not 0 <= best_step <= step:
        return f"'best_step' is {_shown(best_step)}, expected a step from 0 to {step}"
    if math.isnan(state["best_val_loss"]) or state["best_val_loss"] < 0:
        return f"'best_val_loss' is {_shown(state['best_val_loss'])}, expected a number >= 0"
    if not (math.isfinite(state["elapsed"]) and state["elapsed"] >= 0):
        return f"'elapsed' is {_shown(state['elapsed'])}, expected seconds >= 0"
    interval = state["interval"]
    if not (len(interval) == 2 and _is(interval[0], (int, float)) and math.isfinite(interval[0])
            and _is(interval[1], int) and 0 <= interval[1] <= step):
        return f"'interval' is {_shown(interval)}, expected [loss sum, steps from 0 to {step}]"
    optimizer_step = state["optimizer"].get("step")
    if optimizer_step != step or not _is(optimizer_step, int):
        return f"'optimizer' is {_shown(state['optimizer'])}, expected its 'step' to be the folder's, {step}"
    evaluated = state.get("evaluated", -1)  # absent in step folders of earlier versions
    if not (_is(evaluated, int) and -1 <= evaluated <= step):
        return f"'evaluated' is {_shown(evaluated)}, expected a step from -1 (none) to {step}"
    for key in ("data_rng", "init_rng"):
        try:
            np.random.default_rng().bit_generator.state = state[key]
        except (TypeError, ValueError, KeyError):
            return f"{key!r} is not a numpy random generator's state"
    return None


def _is(value, kind) -> bool:
    return not isinstance(value, bool) and isinstance(value, kind)  # JSON true is an int to Python


def _shown(value) -> str:
    return json.dumps(value)[:40]
