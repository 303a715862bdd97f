"""A run's settings, stored in its folder as settings.json, so that `--resume` continues the run
that was started, whatever flags the resuming command repeats or forgets.

A resumed run takes every setting from there. A flag given again with another value is applied,
and said (the number of steps, the learning rate, the bookkeeping, the export target), unless it
would make another run: the model's shape, the data and the seed belong to the checkpoint's
weights and data position, so those are refused.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import asdict, fields, replace
from pathlib import Path

from . import run_files, run_state
from .config import PRESETS, TrainConfig, problem

# Settings of one command, not of the run.
PER_COMMAND = ("out", "resume", "overwrite", "quiet", "given")
# Settings a resumed run cannot change.
FIXED = ("model", "n_embd", "n_layer", "n_head", "n_positions", "dropout", "corpus", "tasks", "val_fraction", "seed")
# Paths stored absolute, so that a resume from another folder finds them (a --corpus glob stays as
# it was typed: its matches' paths, relative to where it runs, decide the split).
PATHS = ("corpus", "tasks", "export")


def run_folder(cfg: TrainConfig) -> Path:
    return Path(cfg.out or f"runs/{cfg.model}")


def with_absolute_paths(cfg: TrainConfig) -> TrainConfig:
    return replace(cfg, **_absolute(asdict(cfg)))


def _absolute(values: dict) -> dict:
    """The PATHS among `values`, made absolute where they name something (or are an export target)."""
    absolute = {}
    for name in PATHS:
        value = values.get(name)
        if value and (name == "export" or Path(value).expanduser().exists()):
            absolute[name] = str(Path(value).expanduser().resolve())
    return absolute


def settings(cfg: TrainConfig) -> dict:
    return {k: v for k, v in asdict(cfg).items() if k not in PER_COMMAND}


def save(out: Path, cfg: TrainConfig) -> None:
    run_files.replace_file(out / run_files.SETTINGS, json.dumps(settings(cfg), indent=2, sort_keys=True) + "\n")


def load(out: Path) -> dict | None:
    """The stored settings: settings.json, or for a run begun before it existed, the latest
    checkpoint's copy. Unknown keys are ignored; a wrong type or a value out of its range is an
    error naming the key."""
    path = out / run_files.SETTINGS
    if path.exists() or path.is_symlink():
        try:
            stored = json.loads(run_files.read_own(path))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
    else:
        point = run_state.resume_point(out)
        if point is None:
            return None
        path = point[0] / "trainer_state.json"
        stored = point[1][2].get("train_config")
    if not isinstance(stored, dict):
        raise ValueError(f"{path}: holds no settings object")
    known = {f.name: f for f in fields(TrainConfig) if f.name not in PER_COMMAND}
    values = {k: v for k, v in stored.items() if k in known}
    for name, value in values.items():
        kind = {"int": int, "float": (int, float), "str": str, "bool": bool}[known[name].type]
        if isinstance(value, bool) is not (kind is bool) or not isinstance(value, kind):
            raise ValueError(f"{path}: {name!r} is {json.dumps(value)[:40]}, expected {known[name].type}")
        if (why := problem(name, value)) is not None:
            raise ValueError(f"{path}: {name!r} {why}")
    return {**values, **_absolute(values)}  # a run begun before settings.json stored paths as typed


def resume(cfg: TrainConfig, out: Path) -> tuple[TrainConfig, list[str]]:
    """(the resumed run's settings: the stored ones with the flags given again applied, one line
    for each flag that changes a stored setting). Refuses a change of model, data or seed."""
    stored = load(out)
    if stored is None:
        return cfg, []
    if stored.get("model", cfg.model) != cfg.model:
        raise ValueError(f"{out} holds a {stored['model']} run; continue it with: "
                         f"{resume_command(replace(cfg, model=stored['model']))}")
    given = settings(cfg)
    changed = [k for k in cfg.given if k in stored and k in given and given[k] != stored[k]]
    if fixed := [k for k in changed if k in FIXED]:
        raise ValueError(f"{out} holds a run started with {_flags(stored, fixed)}; a run keeps its model, data "
                         f"and seed: leave out {_flags(given, fixed)}, or start another run (another --out)")
    notes = [f"{_flags(given, [k])} replaces the stored {_flags(stored, [k])}" for k in changed]
    return replace(cfg, **{k: v for k, v in stored.items() if k not in cfg.given}), notes


def resume_command(cfg: TrainConfig) -> str:
    """What to type to continue this run (from the folder it was started in)."""
    return shlex.join(["python", "-m", "pretrain", cfg.model, "--resume"] + (["--out", cfg.out] if cfg.out else []))


def command(cfg: TrainConfig) -> str:
    """The command that starts this run afresh: every setting that differs from the preset's."""
    preset = settings(PRESETS[cfg.model])
    args = ["python", "-m", "pretrain", cfg.model]
    for name, value in settings(cfg).items():
        if value != preset[name]:
            flag = "--" + name.replace("_", "-")
            args += [flag] if value is True else [flag, str(value)]
    return shlex.join(args)


def _flags(values: dict, names: list[str]) -> str:
    return ", ".join(f"--{name.replace('_', '-')} {values[name]}" for name in names)
