"""tinytorch: a deep-learning framework written from scratch in numpy, small enough to read.

    import tinytorch
    from tinytorch.nn import GPT, GPTConfig
    from tinytorch.text import CharTokenizer

Submodules load on first use: `import tinytorch` is numpy and the autograd core, nothing else.
"""

from .rng import manual_seed
from .tensor import Function, Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A new Tensor holding a copy of `data` (float32 unless `dtype` or a float64 array says otherwise)."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype, _copy=True)


__all__ = ["Tensor", "Function", "no_grad", "is_grad_enabled", "manual_seed", "tensor"]
