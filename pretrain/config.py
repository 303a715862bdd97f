"""Presets for the three shipped models, and the command line that overrides any field."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace


@dataclass
class TrainConfig:
    model: str = "copilot"
    # model shape (GPTConfig)
    n_embd: int = 96
    n_layer: int = 4
    n_head: int = 4
    n_positions: int = 128
    dropout: float = 0.0
    # data
    corpus: str = ""  # a file, folder or glob; empty = the running Python's standard library
    tasks: str = ""  # level1 only: a file of INPUT>OUTPUT pairs, one a line
    val_fraction: float = 0.1
    # optimization
    steps: int = 20000
    hours: float = 0.0  # a wall-clock budget: stop cleanly (save, export) when it runs out; 0 = none
    batch_size: int = 32
    lr: float = 2e-3
    min_lr: float = 2e-4
    warmup_steps: int = 200
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    seed: int = 1337
    threads: int = 0  # training-step threads (tinytorch.parallel); 0 = min(2, cores). Fix it to repeat a run bit for bit
    # bookkeeping
    eval_every: int = 1000
    eval_chars: int = 60_000  # validation characters scored at each evaluation (a fixed slice)
    eval_identifiers: int = 100  # identifier-completion cases at each evaluation
    log_every: int = 50
    save_every: int = 500
    keep: int = 3  # step checkpoints kept (the best by validation loss is kept as well)
    out: str = ""  # run folder; default runs/MODEL
    resume: bool = False  # continue the run in --out with its stored settings
    overwrite: bool = False  # start over in an --out that holds a run, deleting that run
    export: str = ""  # write the best model here as a checkpoint folder at the end
    push_to_hub: str = ""  # then publish it as this Hub repo id
    quiet: bool = False  # no progress bar (logs still go to metrics.jsonl)
    extra: dict = field(default_factory=dict, repr=False)
    given: tuple = field(default=(), repr=False)  # the fields set on the command line (the rest a resume takes from the run)


PRESETS = {
    "level1": TrainConfig(
        model="level1", n_embd=16, n_layer=1, n_head=2, n_positions=8, steps=300, batch_size=12,
        lr=1e-2, min_lr=1e-3, warmup_steps=0, weight_decay=0.0, eval_every=50, log_every=10,
        save_every=100,
    ),
    "copilot-tiny": TrainConfig(
        model="copilot-tiny", n_embd=32, n_layer=2, n_head=2, n_positions=64, steps=30000, batch_size=32,
        lr=3e-3, min_lr=3e-4, warmup_steps=200,
    ),
    "copilot": TrainConfig(model="copilot"),
}


def parse_args(argv=None) -> TrainConfig:
    """MODEL, then any TrainConfig field as --flag (booleans as switches)."""
    parser = argparse.ArgumentParser(
        prog="python -m pretrain",
        description="Pretrain a shipped model: level1 (memorization), copilot-tiny or copilot "
                    "(character-level Python autocomplete). Every preset field can be overridden.",
    )
    parser.add_argument("model", choices=sorted(PRESETS), help="which preset to train")
    for f in fields(TrainConfig):
        if f.name in ("model", "extra", "given"):
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.type == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=f"(switch) {f.name}")
        else:
            kind = {"int": int, "float": float, "str": str}[f.type]
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(),
                                help=f"default: the preset's (copilot: {getattr(PRESETS['copilot'], f.name)!r})")
    args = vars(parser.parse_args(argv))
    preset = PRESETS[args.pop("model")]
    given = {k: v for k, v in args.items() if v is not None}
    return replace(preset, **given, given=tuple(sorted(given)))
