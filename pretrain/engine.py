"""Engines: what trains the model, apart from the loop (pretrain/train.py runs one loop for all).

An engine is the model, its optimizer and one step:

    model                  a tinytorch GPT holding the current weights: evaluation and the step
                           folders read it, so both are the same code for every engine
    hardware()             where it trains, in words (recorded in the model's provenance)
    train_step(x, y, lr, max_grad_norm, step) -> (loss, gradient norm before clipping)
    optimizer_state()      (arrays, scalars) in tinytorch AdamW's layout, whichever the engine
    load(weights, arrays, scalars)   put a step folder back

Both engines start from the same weights (tinytorch's initialization for the seed), draw the same
batches (the loop draws them), follow the same schedule and clipping, decay the same parameter
groups (GPT.optimizer_groups) and save the same step folders, so a run started by one resumes in
the other. The numpy engine is the default and the reference; the torch engine
(pretrain/torch_engine.py) imports PyTorch only when it is chosen.

Dropout draws differ: the numpy engine draws its masks from tinytorch's generator (whose state
the step folders keep); the torch engine seeds PyTorch's generator from (seed, step, rank) before
each step, so a resume draws the same masks with no state saved, and its masks depend on the
number of processes.

A group is the processes a run trains in: one, or under torchrun one per rank. The leader (rank 0)
holds the run lock, evaluates, logs and saves; every rank draws the same global batch and trains
on its shard of it.
"""

from __future__ import annotations

import os
import platform

import numpy as np

import tinytorch
from tinytorch.nn import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.threads import DEFAULT_THREADS
from tinytorch.training import train_step

BETAS = (0.9, 0.95)  # AdamW's, in both engines
INSTALL = "PyTorch is not installed: run `make interop` (or pip install -e '.[interop]') for --engine torch"


def initial_model(config: GPTConfig, seed: int, dtype: str) -> GPT:
    """tinytorch's GPT as initialized for `seed`: the first weights of every engine."""
    tinytorch.manual_seed(seed)
    return GPT(config).to(np.dtype(dtype))


def cpu_name() -> str:
    """The processor's model name, as the model card and benchmarks quote it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class NumpyEngine:
    """tinytorch's GPT, AdamW and train_step, on the CPU."""

    def __init__(self, config: GPTConfig, cfg):
        self.model = initial_model(config, cfg.seed, cfg.dtype)
        self.optimizer = AdamW(self.model.optimizer_groups(cfg.weight_decay), lr=cfg.lr, betas=BETAS)
        self.threads = cfg.threads or DEFAULT_THREADS

    def hardware(self) -> str:
        """Where it trains, in words (the model card's)."""
        return f"{cpu_name()}, {self.threads} thread(s), numpy {np.__version__}"

    def train_step(self, x, y, lr: float, max_grad_norm: float, step: int) -> tuple[float, float]:
        self.optimizer.set_lr(lr)
        return train_step(self.model, self.optimizer, x, y, max_grad_norm, step=step)

    def optimizer_state(self) -> tuple[dict, dict]:
        return self.optimizer.state_dict()

    def load(self, weights: dict, arrays: dict, scalars: dict) -> None:
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(arrays, scalars)


class OneProcess:
    """The group of a run in one process: it leads, and agrees with itself."""

    leader, rank, size = True, 0, 1

    def share(self, settle):
        """settle() run by the leader; every rank gets its value (or its error)."""
        return settle()

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on any rank: ranks stop at the same step."""
        return tuple(bool(f) for f in flags)

    def barrier(self) -> None:
        pass

    def close(self) -> None:
        pass


def distributed() -> bool:
    """Whether torchrun started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def check(cfg, settled: bool = True) -> None:
    """Refuse what the chosen engine cannot do here: before the run folder is touched (settled=False:
    a resumed run's engine may yet come from its stored settings), and again once it is settled."""
    if not settled and cfg.resume and "engine" not in cfg.given:
        return
    if cfg.engine == "numpy":
        if distributed():
            raise ValueError("torchrun trains with --engine torch; the numpy engine runs in one process")
        if cfg.device == "cuda":
            raise ValueError("the numpy engine trains on the CPU; for --device cuda add --engine torch")
        return
    torch = import_torch()
    if cfg.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: PyTorch sees no CUDA device here; use --device cpu (or auto)")


def import_torch():
    try:
        import torch
    except ImportError:
        raise ValueError(INSTALL) from None
    return torch


def start_group():
    """The processes of this run: one, or torchrun's ranks (a torch process group)."""
    if not distributed():
        return OneProcess()
    import_torch()
    from .torch_engine import TorchGroup

    return TorchGroup()


def create(cfg, config: GPTConfig, group):
    """The engine that cfg.engine names, for a model of `config`."""
    if cfg.engine == "numpy":
        return NumpyEngine(config, cfg)
    from .torch_engine import TorchEngine

    return TorchEngine(config, cfg, group)
