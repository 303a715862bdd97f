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
      .lock                   held while a run is using the folder (pretrain/run_lock.py)

A step folder is written whole under a temporary name and renamed into place, and `latest` is
replaced only after that: a run killed at any moment resumes from a complete checkpoint. A step
folder damaged afterwards (a truncated file, an edited trainer_state.json) is passed over for the
newest one that loads.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np

from safetensors import SafetensorError

from tinytorch.checkpoint import WEIGHTS_NAME, save_pretrained, write_weights
from tinytorch.files import replace_folder

LATEST = "latest"
METRICS = "metrics.jsonl"
SETTINGS = "settings.json"
# What a failed save raises: safetensors reports a full disk as SafetensorError, not OSError.
SAVE_ERRORS = (OSError, SafetensorError)
# trainer_state.json: each key a resume needs, and the JSON type it must have
STATE_KEYS = {"step": int, "best_step": int, "best_val_loss": (int, float), "elapsed": (int, float),
              "interval": list, "model_config": dict, "data_rng": dict, "init_rng": dict, "optimizer": dict}


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def check_writable(out: Path) -> None:
    """Fail before training starts, not after an hour, when the run folder cannot be written."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"\0" * 65536)
        probe.unlink()
    except OSError as err:
        raise ValueError(f"cannot write to the run folder {out}: {err.strerror or err}") from None
    free = shutil.disk_usage(out).free
    if free < 50_000_000:
        raise ValueError(f"only {free // 1_000_000} MB free under {out}; checkpoints need more room")


def holds_run(out: Path) -> bool:
    """Whether `out` holds (part of) a run: starting another there would mix the two."""
    return any((out / name).exists() for name in (LATEST, METRICS, SETTINGS)) or any(out.glob("step-*"))


def remove_run(out: Path) -> None:
    """Delete the run in `out` (--overwrite): its step folders, pointer, metrics and settings, nothing else."""
    for folder in [*out.glob("step-*"), *out.glob(".step-*")]:
        shutil.rmtree(folder)
    for name in (LATEST, METRICS, SETTINGS):
        (out / name).unlink(missing_ok=True)


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

    replace_folder(folder, write)
    point_latest(out, folder.name)
    return folder


def point_latest(out: Path, name: str) -> None:
    pointer = out / f".{LATEST}.tmp"
    pointer.write_text(name + "\n")
    os.replace(pointer, out / LATEST)


def why(err: Exception) -> str:
    """A failed save's reason in words: safetensors says 'Error while serializing: I/O error: No
    space left on device (os error 28)' where an OSError says 'No space left on device'."""
    if isinstance(err, OSError):
        return err.strerror or str(err)
    return re.sub(r" \(os error \d+\)$", "", str(err).rsplit(": ", 1)[-1])


def prune(out: Path, keep: int, protect: str | None = None) -> None:
    """Delete all but the newest `keep` step folders (and `protect`, the best one)."""
    steps = sorted(p for p in out.glob("step-*") if p.is_dir())
    for old in steps[:-keep] if keep > 0 else steps:
        if old.name != protect:
            shutil.rmtree(old, ignore_errors=True)
    for stale in out.glob(".step-*"):  # temporary folders of saves that were killed midway
        shutil.rmtree(stale, ignore_errors=True)


def best_step(out: Path) -> Path:
    """The step folder with the lowest validation loss, as the latest training state names it."""
    latest = latest_step(out)
    if latest is None:
        raise ValueError(f"{out} holds no complete checkpoint to export")
    return out / step_name(read_trainer_state(latest)["best_step"])


def latest_step(out: Path) -> Path | None:
    pointer = out / LATEST
    if not pointer.exists():
        return None
    folder = out / pointer.read_text().strip()
    if not (folder / "trainer_state.json").exists():
        raise ValueError(f"{pointer} names {folder.name}, which is incomplete or missing")
    return folder


def resume_point(out: Path) -> tuple[Path, tuple, list[str]] | None:
    """(folder, its load_step(), why each newer one was passed over) of the checkpoint to resume:
    the one `latest` names, or when that one is damaged, the newest step folder that loads.
    None when `out` holds no checkpoint at all."""
    pointer = out / LATEST
    named = [out / pointer.read_text().strip()] if pointer.exists() else []
    others = sorted((p for p in out.glob("step-*") if p.is_dir() and p not in named), reverse=True)
    passed_over = []
    for folder in named + others:
        try:
            return folder, load_step(folder), passed_over
        except (ValueError, OSError) as err:
            passed_over.append(f"{folder.name} is damaged or incomplete ({err})")
    if passed_over:
        raise ValueError(f"{out}: no checkpoint loads; the newest: {passed_over[0]}; start over with --overwrite")
    return None


def read_trainer_state(folder: Path) -> dict:
    """trainer_state.json, checked: every key a resume needs, with the right JSON type."""
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
        if isinstance(state[key], bool) or not isinstance(state[key], kind):  # JSON true is an int to Python
            raise ValueError(f"{path}: {key!r} is {json.dumps(state[key])[:40]}, expected {_JSON_NAMES[kind]}")
    interval, scalars = state["interval"], state["optimizer"]
    if len(interval) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in interval):
        raise ValueError(f"{path}: 'interval' is {json.dumps(interval)[:40]}, expected [loss sum, steps]")
    if isinstance(scalars.get("step"), bool) or not isinstance(scalars.get("step"), int):
        raise ValueError(f"{path}: 'optimizer' needs an integer 'step', got {json.dumps(scalars)[:40]}")
    for key in ("data_rng", "init_rng"):
        try:
            restore_rng(np.random.default_rng(), state[key])
        except (TypeError, ValueError, KeyError):
            raise ValueError(f"{path}: {key!r} is not a numpy random generator's state") from None
    return state


_JSON_NAMES = {int: "an integer", (int, float): "a number", list: "a list", dict: "an object"}


def load_step(folder: Path):
    """(model weights dict, optimizer arrays, trainer state) of a step folder, each checked."""
    from safetensors.numpy import load_file

    from tinytorch.checkpoint import load_weights, read_tensor_index

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
    return weights, arrays, state


def rng_state(generator: np.random.Generator) -> dict:
    return generator.bit_generator.state


def restore_rng(generator: np.random.Generator, state: dict) -> None:
    generator.bit_generator.state = state


def append_metrics(out: Path, record: dict) -> None:
    with open(out / METRICS, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(out: Path) -> list[dict]:
    path = out / METRICS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut short by a kill
    return records


def rewind(out: Path, step: int) -> None:
    """On resume: forget what the run did after checkpoint `step` (metrics, step folders, the
    pointer to a newer one), since those steps run again."""
    kept = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    tmp = out / ".metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    os.replace(tmp, out / METRICS)
    for folder in out.glob("step-*"):
        if folder.is_dir() and folder.name > step_name(step):
            shutil.rmtree(folder)
    point_latest(out, step_name(step))
