"""The run folder: step checkpoints with the training state beside the model, a pointer to the
latest, the best model, and metrics.jsonl.

    runs/copilot/
      latest                  the name of the newest complete step folder (replaced atomically)
      step-000500/
        model/                a checkpoint folder (config.json, model.safetensors, README.md)
        optimizer.safetensors AdamW's moments
        trainer_state.json    step, RNG states, data position, best validation loss, ...
      (the step folder with the lowest validation loss is kept however old: trainer_state.json
       names it as best_step)
      metrics.jsonl           one JSON record per log line and per evaluation
      settings.json           the run's settings, which --resume takes (pretrain/run_settings.py)
      .tinytorch-run          the marker: this folder holds a run (pretrain/run_files.py)
      .lock                   held while a run is using the folder (pretrain/run_lock.py)

A step folder is written whole under a temporary name and renamed into place, and `latest` is
replaced only after that: a run killed at any moment resumes from a complete checkpoint. A step
folder damaged afterwards (a truncated file, an edited trainer_state.json) is passed over for the
newest one that loads. Only the kit's own names are touched (pretrain/run_files.py): a user's
`step-notes/` beside the step folders stays.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

from safetensors import SafetensorError

from tinytorch.checkpoint import WEIGHTS_NAME, save_pretrained, write_weights
from tinytorch.files import replace_folder

from . import run_files
from .config import PRESETS
from .run_files import LATEST, METRICS, SETTINGS, step_folders, step_name, step_number
from .trainer_state import read_trainer_state

# What a failed save raises: safetensors reports a full disk as SafetensorError, not OSError.
SAVE_ERRORS = (OSError, SafetensorError)
FREE_BYTES = 50_000_000  # the least free space a run starts with: a few step folders of the copilot


def check_writable(out: Path) -> None:
    """Fail before training starts, not after an hour, when the run folder cannot be written."""
    run_files.check_writable(out)
    free = shutil.disk_usage(out).free
    if free < FREE_BYTES:
        raise ValueError(f"only {free // 1_000_000} MB free under {out}; checkpoints need more room")


def holds_run(out: Path) -> bool:
    """Whether `out` holds a run: the kit's marker, or (a run begun before the marker) a `latest`
    pointer naming a step folder with its trainer_state.json, or settings.json of a preset."""
    if run_files.is_marked(out):
        return True
    try:
        named = out / run_files.read_own(out / LATEST).strip()
        if run_files.STEP.match(named.name) and not named.is_symlink() and (named / "trainer_state.json").is_file():
            return True
    except (OSError, ValueError):
        pass
    try:
        settings = json.loads(run_files.read_own(out / SETTINGS))
    except (OSError, ValueError):
        return False
    return isinstance(settings, dict) and settings.get("model") in PRESETS and "save_every" in settings


def check_foreign(out: Path) -> None:
    """Refuse a folder that holds files of its own and no run: a run does not move in among them."""
    if holds_run(out):
        return
    if found := run_files.contents(out):
        shown = ", ".join(found[:4]) + (f" and {len(found) - 4} more" if len(found) > 4 else "")
        raise ValueError(f"{out} holds files that are not a tinytorch run's ({shown}); a run needs a new or "
                         "empty folder: give another --out (nothing was changed)")


def save_step(out: Path, step: int, model, tokenizer, optimizer_state: tuple[dict, dict], trainer_state: dict,
              provenance: dict) -> Path:
    """Write step folder `step` atomically and point `latest` at it. optimizer_state: (arrays,
    scalars) in tinytorch AdamW's layout, which every engine gives."""
    folder = out / step_name(step)

    def write(tmp: Path):
        save_pretrained(model, tmp / "model", tokenizer=tokenizer, provenance=provenance)
        if model.transformer.wte.weight.dtype != np.float32:  # a float64 run resumes exactly too
            write_weights(tmp / "model" / WEIGHTS_NAME, model.state_dict(), dtype=None)
        arrays, scalars = optimizer_state
        write_weights(tmp / "optimizer.safetensors", arrays, dtype=None)
        state = {**trainer_state, "optimizer": scalars}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    if folder.is_symlink():  # not the kit's: replace_folder would move the link aside, never follow it
        folder.unlink()
    replace_folder(folder, write)
    point_latest(out, folder.name)
    return folder


def point_latest(out: Path, name: str) -> None:
    run_files.replace_file(out / LATEST, name + "\n")


def why(err: Exception) -> str:
    """A failed save's reason in words: safetensors says 'Error while serializing: I/O error: No
    space left on device (os error 28)' where an OSError says 'No space left on device'."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return re.sub(r" \(os error \d+\)$", "", str(err).rsplit(": ", 1)[-1])


def prune(out: Path, keep: int, protect: str | None = None) -> None:
    """Delete all but the newest `keep` (at least 1) step folders, never the one `latest` names
    nor `protect` (the best one)."""
    keep = max(1, keep)
    kept = {protect, _latest_name(out)}
    for old in step_folders(out)[:-keep]:
        if old.name not in kept:
            shutil.rmtree(old, ignore_errors=True)
    run_files.remove_leftovers(out)  # of saves that were killed midway


def best_step(out: Path) -> Path:
    """The step folder with the lowest validation loss, as the latest training state names it."""
    latest = latest_step(out)
    if latest is None:
        raise ValueError(f"{out} holds no complete checkpoint to export")
    return out / step_name(read_trainer_state(latest)["best_step"])


def _latest_name(out: Path) -> str | None:
    """The step folder name `latest` holds, or None (no pointer, or not a step folder's name)."""
    try:
        name = run_files.read_own(out / LATEST).strip()
    except (OSError, ValueError):
        return None
    return name if run_files.STEP.match(name) else None


def latest_step(out: Path) -> Path | None:
    if not (out / LATEST).exists():
        return None
    name = _latest_name(out)
    if name is None:
        raise ValueError(f"{out / LATEST} names no step folder (expected a name like step-000500)")
    folder = out / name
    if folder.is_symlink() or not (folder / "trainer_state.json").exists():
        raise ValueError(f"{out / LATEST} names {name}, which is incomplete or missing")
    return folder


class NotThisRun(ValueError):
    """A step folder that loads, but of another run (another model or corpus): not passed over."""


def resume_point(out: Path, load=None) -> tuple[Path, tuple, list[str]] | None:
    """(folder, load(folder), why each newer one was passed over) of the checkpoint to resume:
    the one `latest` names, or when that one is damaged, the newest step folder that loads.
    load: reads and checks a step folder, raising ValueError (or OSError) for a damaged one;
    default load_step. None when `out` holds no checkpoint at all."""
    load = load or load_step
    name = _latest_name(out)
    named = [out / name] if name else []
    others = [p for p in reversed(step_folders(out)) if p not in named]
    passed_over = []
    for folder in named + others:
        try:
            return folder, load(folder), passed_over
        except NotThisRun:
            raise
        except (ValueError, OSError) as err:
            passed_over.append(f"{folder.name} is damaged or incomplete ({err})")
    if passed_over:
        raise ValueError(f"{out}: no checkpoint loads; the newest: {passed_over[0]}; start over with --overwrite")
    return None


def load_step(folder: Path):
    """(model weights dict, optimizer arrays, trainer state) of a step folder, each checked: the
    optimizer's moments finite, and the second ones >= 0 (Adam takes their square root)."""
    from safetensors.numpy import load_file

    from tinytorch.checkpoint import load_weights, read_tensor_index

    if folder.is_symlink():
        raise ValueError(f"{folder}: a symbolic link, not a step folder the run wrote")
    state = read_trainer_state(folder)
    weights = load_weights(folder / "model")  # checked, as float32
    if any(dtype == "F64" for dtype, _ in read_tensor_index(folder / "model" / WEIGHTS_NAME).values()):
        weights = {name: value for name, value in load_file(str(folder / "model" / WEIGHTS_NAME)).items()
                   if name in weights}  # a float64 run's weights, as saved
    path = folder / "optimizer.safetensors"
    try:
        arrays = load_file(str(path))
    except (SafetensorError, OSError) as err:
        raise ValueError(f"{path}: missing, truncated or corrupt ({err})") from None
    for name, value in sorted(arrays.items()):
        if not np.isfinite(value).all():
            raise ValueError(f"{path}: tensor {name} holds NaN or infinite values")
        if name.endswith("exp_avg_sq") and (value < 0).any():
            raise ValueError(f"{path}: tensor {name} holds negative values (second moments are >= 0)")
    return weights, arrays, state


def rng_state(generator: np.random.Generator) -> dict:
    return generator.bit_generator.state


def restore_rng(generator: np.random.Generator, state: dict) -> None:
    generator.bit_generator.state = state


def append_metrics(out: Path, record: dict) -> None:
    """One record, written whole or not at all (an OSError when not)."""
    run_files.append_line(out / METRICS, json.dumps(record, sort_keys=True) + "\n")


def read_metrics(out: Path) -> list[dict]:
    try:
        text = run_files.read_own(out / METRICS)
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut short by a kill
    return records


def rewind(out: Path, folder: Path) -> None:
    """On resume from step folder `folder`: forget what the run did after it (metrics, step
    folders, the pointer to a newer one), since those steps run again. The step is the folder's
    name, never a value read from a file."""
    step = step_number(folder)
    kept = [r for r in read_metrics(out) if not isinstance(r.get("step"), int) or r["step"] <= step]
    run_files.replace_file(out / METRICS, "".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    for newer in step_folders(out):
        if step_number(newer) > step:
            shutil.rmtree(newer)
    point_latest(out, folder.name)
