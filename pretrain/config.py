"""Presets for the three shipped models, and the command line that overrides any field."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field, fields, replace

from tasks import level1
from tinytorch.checkpoint import MAX_PARAMETERS, SIZE_LIMITS


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
    # engine (pretrain/engine.py): what runs the model, its optimizer and each step
    engine: str = "numpy"  # numpy (the reference) or torch (PyTorch: a GPU, several under torchrun)
    device: str = "auto"  # torch only: cpu, cuda, or auto (cuda when there is one)
    dtype: str = "float32"  # of the weights and the arithmetic; float64 for the engines' parity checks
    compile: bool = False  # torch on CUDA: torch.compile the model
    bf16: bool = False  # torch on CUDA: bfloat16 autocast for the forward pass
    given: tuple = field(default=(), repr=False)  # the fields set on the command line (the rest a resume takes from the run)


PRESETS = {
    "level1": TrainConfig(
        model="level1", **level1.SHAPE, steps=300, batch_size=12,
        lr=1e-2, min_lr=1e-3, warmup_steps=0, weight_decay=0.0, eval_every=50, log_every=10,
        save_every=100,
    ),
    "copilot-tiny": TrainConfig(
        model="copilot-tiny", n_embd=32, n_layer=2, n_head=2, n_positions=64, steps=30000, batch_size=32,
        lr=3e-3, min_lr=3e-4, warmup_steps=200,
    ),
    "copilot": TrainConfig(model="copilot"),
    # The overnight model: the best a night of the numpy engine on 2 cores buys. Its steps are the
    # measured seconds per step on a 2-core machine times the steps, with the evaluations, inside 8
    # hours (benchmarks/README.md, "copilot-large"); --hours 8 is the guard on a slower machine.
    "copilot-large": TrainConfig(
        model="copilot-large", n_embd=192, n_layer=6, n_head=6, n_positions=256, steps=11000, hours=8.0,
        batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=200,
    ),
}


# One sentence for each flag of `python -m pretrain MODEL --help`.
HELP = {
    "n_embd": "width of the model: the size of each character's vector",
    "n_layer": "how many transformer blocks are stacked",
    "n_head": "attention heads in each block (n_embd must divide by it)",
    "n_positions": "context: how many characters the model sees at once",
    "dropout": "share of activations dropped while training (0 = none)",
    "corpus": "training text: a file, a folder (its .py and .txt files) or a glob",
    "tasks": "level1 only: a file of INPUT>OUTPUT pairs, one a line, to memorize instead of the default dozen",
    "val_fraction": "share of the corpus's files held out for validation (chosen by a hash of each path)",
    "steps": "optimizer steps in all; the learning-rate schedule runs over this many",
    "hours": "stop cleanly (save, export) after this many hours of training; 0 = no limit",
    "batch_size": "windows of n_positions characters in each step's batch",
    "lr": "peak learning rate, reached after the warmup",
    "min_lr": "learning rate at the end of the cosine decay",
    "warmup_steps": "steps over which the learning rate climbs from 0 to --lr",
    "weight_decay": "AdamW's decoupled weight decay (not applied to biases, LayerNorms or positions)",
    "grad_clip": "clip the gradient's global norm to this before each update (0 = no clipping)",
    "seed": "random seed of the initial weights and the batches",
    "threads": "threads that share each step's batch; 0 = 2, or 1 on a one-core machine. Give a run and its "
               "--resume the same value for bit-equal losses",
    "eval_every": "measure on the validation slice every this many steps",
    "eval_chars": "validation characters scored at each evaluation (a fixed slice, so evaluations compare)",
    "eval_identifiers": "identifier-completion cases at each evaluation",
    "log_every": "write the training loss to metrics.jsonl every this many steps",
    "save_every": "save a resumable checkpoint (model, optimizer, RNG, data position) every this many steps",
    "keep": "step checkpoints kept, besides the best by validation loss",
    "out": "run folder for step checkpoints and metrics.jsonl",
    "resume": "continue from the run folder's latest checkpoint, exactly where it stopped, with the run's stored settings",
    "overwrite": "start over in an --out that already holds a run, deleting that run's files (and nothing else)",
    "export": "at the end, write the best model here as a checkpoint folder with its model card",
    "push_to_hub": "then publish that folder as this Hub repo id (user/model); token from HF_TOKEN or "
                   "`hf auth login`",
    "quiet": "no progress bar (metrics.jsonl is written all the same)",
    "engine": "what trains: numpy (tinytorch, the reference) or torch (PyTorch, `make interop`; on a GPU, and on "
              "several under torchrun); step folders of either resume in the other",
    "device": "--engine torch: where it trains: cpu, cuda, or auto (cuda when there is one)",
    "dtype": "float32, or float64 to compare the engines to many digits (slower)",
    "compile": "--engine torch on CUDA: compile the model with torch.compile (a minute at the start, faster steps)",
    "bf16": "--engine torch on CUDA: run the forward pass in bfloat16 autocast (weights and optimizer stay float32)",
}

# The values a string setting may take.
CHOICES = {"engine": ("numpy", "torch"), "device": ("auto", "cpu", "cuda"), "dtype": ("float32", "float64")}


# The range of every number setting, inclusive: a value outside it is refused on the command line
# and when a resume reads settings.json back, before anything is built. The model's sizes are a
# checkpoint's (tinytorch.checkpoint.SIZE_LIMITS); its parameter count is checked as well.
RANGES = {
    "n_embd": (1, SIZE_LIMITS["n_embd"]), "n_layer": (1, SIZE_LIMITS["n_layer"]),
    "n_head": (1, SIZE_LIMITS["n_head"]), "n_positions": (1, SIZE_LIMITS["n_positions"]),
    "dropout": (0.0, 0.9), "val_fraction": (0.001, 0.9),
    "steps": (1, 10**9), "hours": (0.0, 10_000.0), "batch_size": (1, 65_536),
    "lr": (1e-12, 1e12), "min_lr": (0.0, 1e12), "warmup_steps": (0, 10**9), "weight_decay": (0.0, 10.0),
    "grad_clip": (0.0, 1e6), "seed": (0, 2**63 - 1), "threads": (0, 1_024),
    "eval_every": (1, 10**9), "eval_chars": (1, 10**9), "eval_identifiers": (0, 100_000),
    "log_every": (1, 10**9), "save_every": (1, 10**9), "keep": (1, 10**6),
}


def problem(name: str, value) -> str | None:
    """What is wrong with `value` for setting `name` (its range, its choices), or None."""
    if name in RANGES:
        low, high = RANGES[name]
        if not low <= value <= high:  # NaN too
            kind = "a whole number" if isinstance(low, int) else "a number"
            return f"must be {kind} from {_number(low)} to {_number(high)}, got {value!r}"
    if name in CHOICES and value not in CHOICES[name]:
        return f"must be one of {', '.join(CHOICES[name])}, got {value!r}"
    return None


def _number(value) -> str:
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"


def check(cfg: TrainConfig) -> None:
    """Refuse, in one line naming the flag, a setting out of its range or a model too big to build."""
    for f in fields(TrainConfig):
        if (why := problem(f.name, getattr(cfg, f.name))) is not None:
            raise ValueError(f"--{f.name.replace('_', '-')} {why}")
    if cfg.n_embd % cfg.n_head:
        raise ValueError(f"--n-embd {cfg.n_embd} must be a multiple of --n-head {cfg.n_head}")
    if cfg.min_lr > cfg.lr:
        raise ValueError(f"--min-lr {cfg.min_lr:g} must not exceed --lr {cfg.lr:g}")
    if (count := parameters(cfg)) > MAX_PARAMETERS:
        raise ValueError(f"--n-embd {cfg.n_embd}, --n-layer {cfg.n_layer}, --n-positions {cfg.n_positions} make a "
                         f"model of {count:,} parameters; tinytorch builds at most {MAX_PARAMETERS:,}")


def parameters(cfg: TrainConfig) -> int:
    """The parameter count of the model `cfg` describes: arithmetic, nothing built."""
    from tinytorch.checkpoint import parameter_count
    from tinytorch.nn import GPTConfig

    vocab = 256  # at least any preset's tokenizer's (the Python one has 98 ids)
    return parameter_count(GPTConfig(vocab_size=vocab, n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                                     n_layer=cfg.n_layer, n_head=cfg.n_head))


EMPTY = {"out": "runs/{model}", "corpus": "the standard library of the Python running this"}  # what an empty string field means


def _chosen_preset(argv) -> str:
    """The preset named on the command line (for --help's defaults), else copilot."""
    return next((a for a in argv if a in PRESETS), "copilot")


def parse_args(argv=None) -> TrainConfig:
    """MODEL, then any TrainConfig field as --flag (booleans as switches)."""
    import sys

    argv = sys.argv[1:] if argv is None else list(argv)
    shown = PRESETS[_chosen_preset(argv)]
    parser = argparse.ArgumentParser(
        prog="python -m pretrain", usage="%(prog)s MODEL [--steps N --hours H --resume --export DIR ...]",
        description="Pretrain a shipped model: level1 (memorization), copilot-tiny, copilot or "
                    "copilot-large (character-level Python autocomplete; copilot-large is the overnight run). "
                    "Every preset field can be overridden; "
                    f"the defaults shown are {shown.model}'s (`python -m pretrain MODEL --help` shows MODEL's).",
    )
    parser.add_argument("model", choices=sorted(PRESETS), metavar="MODEL",
                        help=f"which preset to train: {', '.join(sorted(PRESETS))}")
    for f in fields(TrainConfig):
        if f.name in ("model", "given"):
            continue
        flag = "--" + f.name.replace("_", "-")
        sentence = HELP.get(f.name, f.name.replace("_", " "))
        if f.type == "bool":
            parser.add_argument(flag, action="store_true", default=None, help=sentence)
        else:
            kind = {"int": int, "float": float, "str": str}[f.type]
            value = getattr(shown, f.name)
            shown_value = EMPTY.get(f.name, "none").format(model=shown.model) if value == "" else repr(value)
            default = f"(default: {shown_value})"
            parser.add_argument(flag, type=kind, default=None, metavar=f.name.upper(), choices=CHOICES.get(f.name),
                                help=f"{sentence} {default}")
    args = vars(parser.parse_args(argv))
    preset = PRESETS[args.pop("model")]
    given = {k: v for k, v in args.items() if v is not None}
    return replace(preset, **given, given=tuple(sorted(given)))
