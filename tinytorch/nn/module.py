"""Module and Parameter: containers that name their parameters, as torch.nn does."""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterator

import numpy as np

from ..tensor import Tensor


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable (requires_grad=True)."""

    # _grad_buffer: where backward writes this parameter's gradient, set by an optimizer (its
    # slice of the optimizer's flat gradient array), held by a weak reference: the buffer lives as
    # long as the optimizer, not as long as the model (a fine-tuned model kept after its run would
    # otherwise hold a gradient as large as its weights). None writes a fresh array each time.
    __slots__ = ("_grad_buffer",)

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)
        self._grad_buffer = None

    def _accumulate_grad(self, g: np.ndarray) -> None:
        """backward's self.grad += g. An optimizer that manages this parameter gives it
        `_grad_buffer`, its slice of the optimizer's one flat gradient array: the gradient is
        written there, so that clipping and the update read one array instead of gathering
        dozens (see optim.py)."""
        buffer = self._grad_buffer() if self._grad_buffer is not None else None
        if self.grad is None:
            if buffer is not None and buffer.shape == self.data.shape and buffer.dtype == self.data.dtype:
                np.copyto(buffer, g)
                self.grad = buffer
            else:
                self.grad = np.array(g, dtype=self.dtype)
        elif self.grad is buffer:  # our own buffer: add in place
            buffer += g
        else:
            self.grad = self.grad + g

    def __repr__(self) -> str:
        return f"Parameter(shape={self.shape}, dtype={self.dtype})"


class Module:
    """Base class. Assigning a Parameter or Module to an attribute registers it under that name."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    # ------------------------------------------------------------------ parameters
    def named_parameters(self, prefix: str = "") -> Iterator[tuple[str, Parameter]]:
        """Each parameter once, with its dotted name; a tied (shared) parameter under its first name."""
        seen = set()
        for name, param in self._named_parameters_all(prefix):
            if id(param) not in seen:
                seen.add(id(param))
                yield name, param

    def _named_parameters_all(self, prefix):
        for name, param in self._parameters.items():
            yield prefix + name, param
        for name, module in self._modules.items():
            yield from module._named_parameters_all(f"{prefix}{name}.")

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def modules(self) -> Iterator["Module"]:
        yield self
        for module in self._modules.values():
            yield from module.modules()

    def num_parameters(self) -> int:
        return sum(p.size for p in self.parameters())

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def train(self, mode: bool = True) -> "Module":
        for module in self.modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def to(self, dtype) -> "Module":
        """Cast every parameter to `dtype` (float64 for gradient checks)."""
        for p in self.parameters():
            p.data = p.data.astype(dtype)
            p.grad = None
        return self

    # ------------------------------------------------------------------ state
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Parameter name -> array (the arrays themselves, not copies)."""
        return OrderedDict((name, p.data) for name, p in self.named_parameters())

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy `state` into the parameters, in place (optimizers hold views of them).

        With `strict`, every parameter must be present with its shape and nothing else may be:
        the error names each missing, unexpected and mis-shaped tensor.
        """
        own = dict(self.named_parameters())
        missing = [n for n in own if n not in state]
        unexpected = [n for n in state if n not in own]
        misshaped = [
            f"{n}: checkpoint {tuple(np.shape(state[n]))}, model {own[n].shape}"
            for n in own
            if n in state and tuple(np.shape(state[n])) != own[n].shape
        ]
        problems = []
        if misshaped:
            problems.append("wrong shape: " + "; ".join(misshaped))
        if strict and missing:
            problems.append("missing: " + ", ".join(missing))
        if strict and unexpected:
            problems.append("unexpected: " + ", ".join(unexpected))
        if problems:
            raise ValueError("state_dict does not fit the model (" + " | ".join(problems) + ")")
        for name, param in own.items():
            if name in state:
                np.copyto(param.data, np.asarray(state[name]), casting="same_kind")

    def __repr__(self) -> str:
        lines = [f"  ({name}): " + repr(m).replace("\n", "\n  ") for name, m in self._modules.items()]
        return type(self).__name__ + ("(\n" + "\n".join(lines) + "\n)" if lines else "()")


class ModuleList(Module):
    """A list of Modules named 0, 1, 2, ... (GPT-2's `transformer.h.{i}`)."""

    def __init__(self, modules=()):
        super().__init__()
        for module in modules:
            self.append(module)

    def append(self, module: Module) -> None:
        setattr(self, str(len(self._modules)), module)

    def __getitem__(self, i: int) -> Module:
        return list(self._modules.values())[i]

    def __iter__(self):
        return iter(self._modules.values())

    def __len__(self) -> int:
        return len(self._modules)


class ModuleDict(Module):
    """Named sub-modules given as keyword arguments (GPT-2's `transformer.wte`, ...)."""

    def __init__(self, **modules):
        super().__init__()
        for name, module in modules.items():
            setattr(self, name, module)
