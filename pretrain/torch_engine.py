"""The torch engine: the same GPT-2, AdamW and step in PyTorch, on a GPU or several (torchrun).

TorchGPT has tinytorch's parameter names and shapes (GPT-2's: Linear weights stored (in, out)), so
weights and AdamW's moments go between the two engines by name, with no transposes. The step does
what tinytorch.training.train_step does: mean cross-entropy, backward, clip the global gradient
norm, refuse a non-finite loss or norm before the update, AdamW with the model's decay groups.
Under torchrun each rank trains on its shard of the global batch in DistributedDataParallel,
which averages the gradients: the same update as one process on the whole batch.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

from tinytorch.nn import GPTConfig
from tinytorch.threads import DEFAULT_THREADS
from tinytorch.training import check_finite

from .engine import BETAS, cpu_name, initial_model

DTYPES = {"float32": torch.float32, "float64": torch.float64}
MOMENTS = ("exp_avg", "exp_avg_sq")  # AdamW's state, under tinytorch's names (torch's too)


class Linear(nn.Module):
    """y = x @ weight + bias with weight (in, out): GPT-2's layout (its Conv1D), and tinytorch's."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(n_in, n_out))
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):  # (..., in) -> (..., out)
        return torch.addmm(self.bias, x.reshape(-1, x.shape[-1]), self.weight).view(*x.shape[:-1], -1)


class Attention(nn.Module):
    def __init__(self, n_embd: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.c_attn = Linear(n_embd, 3 * n_embd)
        self.c_proj = Linear(n_embd, n_embd)

    def forward(self, x):  # (B, T, C) -> (B, T, C)
        B, T, C = x.shape
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D) each
                   for t in self.c_attn(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd: int):
        super().__init__()
        self.c_fc = Linear(n_embd, 4 * n_embd)
        self.c_proj = Linear(4 * n_embd, n_embd)

    def forward(self, x):
        return self.c_proj(F.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.dropout = config.dropout
        self.ln_1 = nn.LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.attn = Attention(config.n_embd, config.n_head)
        self.ln_2 = nn.LayerNorm(config.n_embd, config.layer_norm_epsilon)
        self.mlp = MLP(config.n_embd)

    def forward(self, x):
        x = x + F.dropout(self.attn(self.ln_1(x)), self.dropout, self.training)
        return x + F.dropout(self.mlp(self.ln_2(x)), self.dropout, self.training)


class TorchGPT(nn.Module):
    """tinytorch's GPT (tinytorch/nn/gpt.py) in PyTorch: the same names, shapes and dropouts."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.dropout = config.dropout
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.n_positions, config.n_embd),
            h=nn.ModuleList(Block(config) for _ in range(config.n_layer)),
            ln_f=nn.LayerNorm(config.n_embd, config.layer_norm_epsilon),
        ))

    def forward(self, idx):  # (B, T) ids -> (B, T, V) logits
        t = self.transformer
        x = t.wte(idx) + t.wpe(torch.arange(idx.shape[1], device=idx.device))
        x = F.dropout(x, self.dropout, self.training)
        for block in t.h:
            x = block(x)
        return F.linear(t.ln_f(x), t.wte.weight)  # the head is the token embedding


class TorchEngine:
    """The engine interface of pretrain/engine.py, in PyTorch."""

    def __init__(self, config: GPTConfig, cfg, group):
        self.cfg, self.group = cfg, group
        self.host = initial_model(config, cfg.seed, cfg.dtype)  # the numpy engine's first weights
        self.device = pick_device(cfg.device)
        cuda = self.device.type == "cuda"
        if self.device.type == "cpu":
            local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
            torch.set_num_threads(cfg.threads or max(1, DEFAULT_THREADS // local))
        self.bf16 = cfg.bf16 and cuda and cfg.dtype == "float32"
        compiled = cfg.compile and cuda
        for flag, used, needs in (("compile", compiled, "CUDA"), ("bf16", self.bf16, "float32 training on CUDA")):
            if getattr(cfg, flag) and not used and group.leader:
                print(f"--{flag} is for {needs}; training on {self.device} in {cfg.dtype} without it", file=sys.stderr)
        if cfg.model != "level1" and cfg.batch_size % group.size:
            raise ValueError(f"--batch-size {cfg.batch_size} does not split over {group.size} processes: "
                             f"give a multiple of {group.size}")

        self.net = TorchGPT(config).to(self.device, DTYPES[cfg.dtype])
        self._copy_in()
        names = {id(p): name for name, p in self.host.named_parameters()}
        params = dict(self.net.named_parameters())
        # the model's own decay groups, by name: group i here is tinytorch AdamW's group i
        groups = self.host.optimizer_groups(cfg.weight_decay)
        self.params = [[params[names[id(p)]] for p in g["params"]] for g in groups]
        self.optimizer = torch.optim.AdamW(
            [{"params": ps, "weight_decay": g["weight_decay"]} for ps, g in zip(self.params, groups)],
            lr=cfg.lr, betas=BETAS, eps=1e-8, fused=True if cuda else None)
        model = self.net
        if group.size > 1:
            model = nn.parallel.DistributedDataParallel(self.net, device_ids=[self.device] if cuda else None)
        self.forward = torch.compile(model) if compiled else model
        self._stale = False  # whether self.host lags behind self.net

    def hardware(self) -> str:
        """Where it trains, in words (the model card's)."""
        if self.device.type == "cuda":
            where = f"{torch.cuda.get_device_name(self.device)} (CUDA)"
        else:
            where = f"{cpu_name()}, {torch.get_num_threads()} thread(s)"
        ranks = f", {self.group.size} processes" if self.group.size > 1 else ""
        return f"{where}{ranks}, torch {torch.__version__}"

    @property
    def model(self):
        """The tinytorch GPT, holding this engine's current weights (copied over when they changed)."""
        if self._stale:
            host = dict(self.host.named_parameters())
            with torch.no_grad():
                for name, p in self.net.named_parameters():
                    np.copyto(host[name].data, p.detach().cpu().numpy())
            self._stale = False
        return self.host

    def train_step(self, x, y, lr: float, max_grad_norm: float, step: int) -> tuple[float, float]:
        """One step on this rank's shard of the global batch (B, T); the loss is the whole batch's."""
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        x, y = self._shard(x), self._shard(y)
        if self.cfg.dropout:  # masks that depend on the step alone: a resume draws them again
            torch.manual_seed(int(np.random.SeedSequence([self.cfg.seed, step, self.group.rank]).generate_state(1)[0]))
        self.optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.forward(x)  # (B / ranks, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        loss.backward()  # DistributedDataParallel averages the gradients over the ranks here
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), max_grad_norm or float("inf"))
        mean = loss.detach()
        if self.group.size > 1:  # the whole batch's loss (gloo has no AVG: sum, then divide)
            mean = mean.clone()
            dist.all_reduce(mean)
            mean /= self.group.size
        value, norm = float(mean), float(norm)
        check_finite(value, norm, lr, step)
        self.optimizer.step()
        self._stale = True
        return value, norm

    def _shard(self, a: np.ndarray):
        """This rank's rows of a global batch, on the device."""
        rows = a.shape[0] // self.group.size
        if rows * self.group.size != a.shape[0]:
            raise ValueError(f"a batch of {a.shape[0]} does not split over {self.group.size} processes")
        part = np.ascontiguousarray(a[self.group.rank * rows:(self.group.rank + 1) * rows], dtype=np.int64)
        return torch.from_numpy(part).to(self.device, non_blocking=True)

    def optimizer_state(self) -> tuple[dict, dict]:
        """AdamW's moments as tinytorch's AdamW stores them: one flat array per group and moment."""
        arrays, step = {}, 0
        for i, params in enumerate(self.params):
            for key in MOMENTS:
                parts = []
                for p in params:
                    state = self.optimizer.state.get(p)
                    parts.append(state[key].detach().cpu().numpy().ravel() if state
                                 else np.zeros(p.numel(), dtype=self.host.transformer.wte.weight.dtype))
                arrays[f"group{i}.{key}"] = np.concatenate(parts)
        first = self.optimizer.state.get(self.params[0][0])
        if first:
            step = int(first["step"])
        return arrays, {"step": step}

    def load(self, weights: dict, arrays: dict, scalars: dict) -> None:
        self.host.load_state_dict(weights)  # checks every name and shape
        self._copy_in()
        step = int(scalars["step"])
        fused = self.optimizer.param_groups[0].get("fused")
        for i, params in enumerate(self.params):
            offsets = np.cumsum([0] + [p.numel() for p in params])
            for key in MOMENTS:
                name = f"group{i}.{key}"
                if name not in arrays or np.shape(arrays[name]) != (offsets[-1],):
                    raise ValueError(f"optimizer state {name!r} is missing or has the wrong size")
            for p, start, end in zip(params, offsets[:-1], offsets[1:]):
                state = {key: torch.tensor(arrays[f"group{i}.{key}"][start:end].reshape(p.shape),
                                           dtype=p.dtype, device=p.device) for key in MOMENTS}
                # torch's AdamW keeps the step count per parameter, a float32 scalar
                state["step"] = torch.tensor(float(step), dtype=torch.float32, device=p.device if fused else "cpu")
                self.optimizer.state[p] = state
        self._stale = False

    def _copy_in(self) -> None:
        """self.host's weights into self.net."""
        state = self.host.state_dict()
        with torch.no_grad():
            for name, p in self.net.named_parameters():
                p.copy_(torch.from_numpy(np.ascontiguousarray(state[name])))


def pick_device(name: str) -> torch.device:
    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


class TorchGroup:
    """torchrun's processes: gloo between CPUs, NCCL between GPUs; rank 0 leads."""

    def __init__(self):
        cuda = torch.cuda.is_available()
        if cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo")
        self.rank, self.size = dist.get_rank(), dist.get_world_size()
        self.leader = self.rank == 0

    def share(self, settle):
        """settle() run by the leader; every rank gets its value. When it fails, the leader raises
        (and says why) and the other ranks exit quietly with status 2."""
        payload = [None]
        if self.leader:
            try:
                payload = [(True, settle())]
            except BaseException:
                dist.broadcast_object_list([(False, None)], src=0, device=torch.device("cpu"))
                raise
        dist.broadcast_object_list(payload, src=0, device=torch.device("cpu"))
        ok, value = payload[0]
        if not ok:
            raise SystemExit(2)
        return value

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Each flag true on any rank (a small all-reduce on the CPU)."""
        votes = torch.tensor([int(bool(f)) for f in flags], dtype=torch.int32)
        dist.all_reduce(votes, op=dist.ReduceOp.MAX)
        return tuple(bool(v) for v in votes.tolist())

    def barrier(self) -> None:
        self.agree(False)

    def close(self) -> None:
        dist.destroy_process_group()
