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

A step folder is written whole under a temporary name and renamed into place, and `latest` is
replaced only after that: a run killed at any moment resumes from a complete checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from tinytorch.checkpoint import replace_folder, save_pretrained, write_weights

LATEST = "latest"


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


def save_step(out: Path, step: int, model, tokenizer, optimizer, trainer_state: dict, provenance: dict) -> Path:
    """Write step folder `step` atomically, point `latest` at it, drop old ones beyond `keep`."""
    folder = out / step_name(step)

    def write(tmp: Path):
        save_pretrained(model, tmp / "model", tokenizer=tokenizer, provenance=provenance)
        arrays, scalars = optimizer.state_dict()
        write_weights(tmp / "optimizer.safetensors", arrays)
        state = {**trainer_state, "optimizer": scalars}
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")

    replace_folder(folder, write)
    pointer = out / f".{LATEST}.tmp"
    pointer.write_text(folder.name + "\n")
    os.replace(pointer, out / LATEST)
    return folder


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
    state = json.loads((latest / "trainer_state.json").read_text())
    return out / step_name(state["best_step"])


def latest_step(out: Path) -> Path | None:
    pointer = out / LATEST
    if not pointer.exists():
        return None
    folder = out / pointer.read_text().strip()
    if not (folder / "trainer_state.json").exists():
        raise ValueError(f"{pointer} names {folder.name}, which is incomplete or missing")
    return folder


def load_step(folder: Path):
    """(model weights dict, optimizer arrays, trainer state) of a step folder."""
    from safetensors.numpy import load_file

    from tinytorch.checkpoint import load_weights

    state = json.loads((folder / "trainer_state.json").read_text())
    weights = load_weights(folder / "model")
    arrays = load_file(str(folder / "optimizer.safetensors"))
    return weights, arrays, state


def rng_state(generator: np.random.Generator) -> dict:
    return generator.bit_generator.state


def restore_rng(generator: np.random.Generator, state: dict) -> None:
    generator.bit_generator.state = state


def append_metrics(out: Path, record: dict) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")


def read_metrics(out: Path) -> list[dict]:
    path = out / "metrics.jsonl"
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            pass  # a line cut short by a kill
    return records


def truncate_metrics(out: Path, step: int) -> None:
    """On resume: forget what was logged after the checkpoint, since those steps run again."""
    kept = [r for r in read_metrics(out) if r.get("step", 0) <= step]
    tmp = out / ".metrics.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in kept))
    os.replace(tmp, out / "metrics.jsonl")
