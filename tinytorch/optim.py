"""Optimizers (SGD, Adam, AdamW), gradient clipping and a warmup + cosine learning-rate schedule.

Each parameter group keeps its parameters in one contiguous buffer (every `param.data` becomes a
view into it), so an update is a handful of vectorized numpy calls however many tensors the
model has, instead of a handful per tensor. Gradients get one flat buffer too: backward writes
each parameter's gradient straight into its slice (`param.grad` is then a view of the buffer),
so clipping and the update read one array and nothing is gathered. As a consequence, a
parameter's `.grad` array is reused by the next backward after zero_grad(): copy it to keep it.
"""

from __future__ import annotations

import math
import weakref

import numpy as np


# The update's blocks: a few arrays of this many float32 fit in a core's L2 together, and numpy's
# fixed cost per call (~1 us) stays small next to a block's work.
_OPTIMIZER_BLOCK = 1 << 15


def optimizer_blocks(size: int) -> list:
    return [slice(i, i + _OPTIMIZER_BLOCK) for i in range(0, size, _OPTIMIZER_BLOCK)]


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
        """Copy the group's parameters into one buffer and make each `.data` a view of it; give
        each parameter its slice of one flat gradient buffer to accumulate into."""
        params = group["params"]
        flat = np.concatenate([p.data.ravel() for p in params])
        grad = np.zeros_like(flat)
        offsets = np.cumsum([0] + [p.size for p in params])
        # The group holds the gradient views; a parameter only a weak reference to its own (see
        # nn.Parameter), so the buffer goes with the optimizer.
        grad_views = [grad[start:end].reshape(p.shape) for p, start, end in zip(params, offsets[:-1], offsets[1:])]
        for p, start, end, view in zip(params, offsets[:-1], offsets[1:], grad_views):
            p.data = flat[start:end].reshape(p.shape)
            if hasattr(p, "_grad_buffer"):  # a Parameter (a plain Tensor has no slot for it)
                p._grad_buffer = weakref.ref(view)
                if p.grad is not None:  # keep a gradient computed before the optimizer existed
                    np.copyto(view, p.grad)
                    p.grad = view
        group["flat"], group["offsets"], group["grad"] = flat, offsets, grad
        group["views"] = [p.data for p in params]
        group["grad_views"] = grad_views
        block = min(flat.size, _OPTIMIZER_BLOCK)  # the update's temporaries, one block's worth (reused: they stay in cache)
        group["scratch"] = (np.empty(block, dtype=flat.dtype), np.empty(block, dtype=flat.dtype))

    def _flat_grad(self, group) -> np.ndarray:
        """The group's gradients in one buffer (zero for a parameter that got none)."""
        params = group["params"]
        if any(p.data is not view for p, view in zip(params, group["views"])):
            self._flatten(group)  # someone replaced a .data (e.g. Module.to): take the new values
        views = group["grad_views"]
        if all(p.grad is view for p, view in zip(params, views)):
            return group["grad"]  # backward wrote every gradient in place: nothing to gather
        for p, view in zip(params, views):
            if p.grad is None:
                view[...] = 0.0
            elif p.grad is not view:  # set by hand, or accumulated outside the buffer
                np.copyto(view, p.grad)
        return group["grad"]

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
        if wd and not self.decoupled:
            grad = grad + wd * group["flat"]
        t = self.step_count
        bias1, bias2 = 1.0 - beta1**t, 1.0 - beta2**t
        # lr/bias1 * m / (sqrt(v / bias2) + eps) = step * m / (sqrt(v) + eps * sqrt(bias2))
        step, eps_scaled = lr * math.sqrt(bias2) / bias1, eps * math.sqrt(bias2)
        decay = 1.0 - lr * wd if wd and self.decoupled else 1.0  # AdamW: decay the weights, apart from the gradient
        tmp, denom = group["scratch"]  # preallocated, a block long: no allocation per step
        # In blocks that stay in the core's L2 cache across the update's dozen passes (its
        # arrays together are several times larger than L2; figures in benchmarks/README.md).
        for part in optimizer_blocks(grad.size):
            flat, g, m, v = group["flat"][part], grad[part], state["exp_avg"][part], state["exp_avg_sq"][part]
            a, d = tmp[:len(g)], denom[:len(g)]
            if decay != 1.0:
                flat *= decay
            np.subtract(g, m, out=a)  # m = beta1 m + (1 - beta1) g, as m += (1 - beta1) (g - m)
            a *= 1.0 - beta1
            m += a
            np.multiply(g, 1.0 - beta2, out=a)  # v = beta2 v + (1 - beta2) g^2
            a *= g
            v *= beta2
            v += a
            np.sqrt(v, out=d)
            d += eps_scaled
            np.divide(m, d, out=a)
            a *= step
            flat -= a


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter), as torch.optim.AdamW."""

    defaults = {"lr": 1e-3, "betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01}
    decoupled = True


def _gradient_arrays(params) -> list:
    """The gradients of `params` as few arrays as possible: an optimizer's whole flat gradient
    buffer when every parameter it covers is in `params` with its gradient there, else one
    array per gradient."""
    by_buffer, arrays, seen = {}, [], set()
    for p in params:
        g = p.grad
        if g is None or id(p) in seen:
            continue
        seen.add(id(p))
        buffer = getattr(p, "_grad_buffer", None)  # a weak reference (see _flatten)
        if buffer is not None and g is buffer() and g.base is not None:
            entry = by_buffer.setdefault(id(g.base), [g.base, 0, []])
            entry[1] += g.size
            entry[2].append(g)
        else:
            arrays.append(g)
    for flat, covered, views in by_buffer.values():
        if covered == flat.size:
            arrays.append(flat)
        else:
            arrays.extend(views)
    return arrays


def clip_grad_norm_(params, max_norm: float) -> float:
    """Scale all gradients together so their global L2 norm is at most max_norm; return the norm
    before clipping (inf or nan when a gradient is not finite, which callers should check)."""
    grads = _gradient_arrays(params)
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
