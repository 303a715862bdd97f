"""Optimizers (SGD, Adam, AdamW), gradient clipping and a warmup + cosine learning-rate schedule.

Each parameter group keeps its parameters in one contiguous buffer (every `param.data` becomes a
view into it), so an update is a handful of vectorized numpy calls however many tensors the
model has, instead of a handful per tensor.
"""

from __future__ import annotations

import math

import numpy as np


class Optimizer:
    defaults: dict = {}

    def __init__(self, params, **hyper):
        params = list(params)
        if not params:
            raise ValueError("optimizer got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.param_groups = []
        for group in groups:
            group = {**self.defaults, **hyper, **group, "params": list(group["params"])}
            self._check(group)
            self._flatten(group)
            self.param_groups.append(group)
        self.step_count = 0

    @staticmethod
    def _check(group):
        if not group["params"]:
            raise ValueError("a parameter group is empty")
        if not (group["lr"] >= 0 and math.isfinite(group["lr"])):
            raise ValueError(f"learning rate must be a finite number >= 0, got {group['lr']}")
        if len({p.dtype for p in group["params"]}) > 1:
            raise ValueError("every parameter of a group must have the same dtype")

    @staticmethod
    def _flatten(group):
        """Copy the group's parameters into one buffer and make each `.data` a view of it."""
        params = group["params"]
        flat = np.concatenate([p.data.ravel() for p in params])
        offsets = np.cumsum([0] + [p.size for p in params])
        for p, start, end in zip(params, offsets[:-1], offsets[1:]):
            p.data = flat[start:end].reshape(p.shape)
        group["flat"], group["offsets"] = flat, offsets
        group["views"] = [p.data for p in params]
        group["grad"] = np.zeros_like(flat)

    def _flat_grad(self, group) -> np.ndarray:
        """The group's gradients in one buffer (zero for a parameter that got none)."""
        if any(p.data is not view for p, view in zip(group["params"], group["views"])):
            self._flatten(group)  # someone replaced a .data (e.g. Module.to): take the new values
        grad, offsets = group["grad"], group["offsets"]
        for p, start, end in zip(group["params"], offsets[:-1], offsets[1:]):
            if p.grad is None:
                grad[start:end] = 0.0
            else:
                grad[start:end] = p.grad.ravel()
        return grad

    def zero_grad(self) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr

    def step(self) -> None:
        self.step_count += 1
        for i, group in enumerate(self.param_groups):
            self._update(group, self._flat_grad(group), self._state(i, group))

    # Subclasses: the per-group state buffers, and the update of group["flat"] in place.
    _state_names: tuple = ()

    def _state(self, i, group) -> dict:
        if "state" not in group:
            group["state"] = {name: np.zeros_like(group["flat"]) for name in self._state_names}
        return group["state"]

    def _update(self, group, grad, state) -> None:
        raise NotImplementedError

    # ------------------------------------------------------------------ resume
    def state_dict(self) -> tuple[dict, dict]:
        """(arrays, scalars): buffers named `group{i}.{name}`, and the step count."""
        arrays = {}
        for i, group in enumerate(self.param_groups):
            for name, buf in self._state(i, group).items():
                arrays[f"group{i}.{name}"] = buf
        return arrays, {"step": self.step_count}

    def load_state_dict(self, arrays: dict, scalars: dict) -> None:
        for i, group in enumerate(self.param_groups):
            for name, buf in self._state(i, group).items():
                key = f"group{i}.{name}"
                if key not in arrays or np.shape(arrays[key]) != buf.shape:
                    raise ValueError(f"optimizer state {key!r} is missing or has the wrong size")
                np.copyto(buf, arrays[key])
        self.step_count = int(scalars["step"])


class SGD(Optimizer):
    defaults = {"lr": 0.01, "momentum": 0.0, "weight_decay": 0.0}
    _state_names = ("momentum_buffer",)

    def _update(self, group, grad, state):
        if group["weight_decay"]:
            grad = grad + group["weight_decay"] * group["flat"]
        if group["momentum"]:
            buf = state["momentum_buffer"]
            buf *= group["momentum"]
            buf += grad
            grad = buf
        group["flat"] -= group["lr"] * grad


class Adam(Optimizer):
    """Adam; `weight_decay` here is L2 added to the gradient (torch.optim.Adam's meaning)."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0}
    _state_names = ("exp_avg", "exp_avg_sq")
    decoupled = False

    def _update(self, group, grad, state):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        flat, m, v = group["flat"], state["exp_avg"], state["exp_avg_sq"]
        if wd and self.decoupled:
            flat *= 1.0 - lr * wd  # AdamW: decay the weights, apart from the gradient
        elif wd:
            grad = grad + wd * flat
        m += (1.0 - beta1) * (grad - m)  # m = beta1 m + (1 - beta1) g
        v *= beta2
        v += (1.0 - beta2) * grad * grad
        t = self.step_count
        bias1, bias2 = 1.0 - beta1**t, 1.0 - beta2**t
        denom = np.sqrt(v)
        denom *= 1.0 / math.sqrt(bias2)
        denom += eps
        flat -= (lr / bias1) * m / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    decoupled = True


def weight_decay_groups(model, weight_decay: float) -> list[dict]:
    """Two groups: matrices decay; biases, LayerNorm and embedding tables do not."""
    from .nn.layers import Embedding

    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, Embedding)}
    decay, no_decay = [], []
    for _, p in model.named_parameters():
        (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


def clip_grad_norm_(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm
    before clipping (inf or nan when a gradient is not finite, which callers should check)."""
    grads = [p.grad for p in params if p.grad is not None]
    total = math.sqrt(sum(float(np.vdot(g, g)) for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


def cosine_lr(step: int, max_lr: float, warmup_steps: int, total_steps: int, min_lr: float = 0.0) -> float:
    """Linear warmup over `warmup_steps`, then cosine decay from max_lr to min_lr at total_steps."""
    if step < warmup_steps:
        return max_lr * (step + 1) / warmup_steps
    if step >= total_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return min_lr + 0.5 * (max_lr - min_lr) * (1.0 + math.cos(math.pi * progress))
