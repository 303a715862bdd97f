"""Tensor and the autograd engine.

A Tensor wraps a numpy array. Every operation on Tensors is a `Function` (see functions.py): it
computes its result on raw numpy arrays and, when gradients are wanted, records itself on the
result as `_ctx`, with the inputs it came from. `Tensor.backward()` walks that record once, in
reverse topological order, and hands each Function the gradient of its output.
"""

from __future__ import annotations

import threading

import numpy as np


class _GradMode(threading.local):
    """Whether operations record a graph, per thread (as in PyTorch): a server that generates in
    one thread under no_grad must not switch off the gradients of a fine-tune in another."""

    enabled = True

    def __init__(self):
        self.saved = []  # what each open no_grad block will restore


_grad_mode = _GradMode()


def is_grad_enabled() -> bool:
    return _grad_mode.enabled


class no_grad:
    """Context manager (and decorator) that turns off graph recording in this thread."""

    def __enter__(self):
        _grad_mode.saved.append(_grad_mode.enabled)
        _grad_mode.enabled = False

    def __exit__(self, *exc):
        _grad_mode.enabled = _grad_mode.saved.pop()

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper


class _GradSink(threading.local):
    """Where this thread's backward() puts leaf gradients: None means into each leaf's .grad; a
    dict means into it, {leaf: gradient} (see collect_grads)."""

    grads: dict | None = None


_grad_sink = _GradSink()


class collect_grads:
    """Context manager: backward() calls in this thread put leaf gradients into a dict instead of
    the leaves' .grad, and `with collect_grads() as grads:` gives that dict ({leaf: array}).

    tinytorch.parallel runs one backward per shard of a batch in several threads over the same
    parameters: each collects its own gradients, and the caller adds them up in a fixed order.
    """

    def __enter__(self) -> dict:
        self.outer, _grad_sink.grads = _grad_sink.grads, {}
        return _grad_sink.grads

    def __exit__(self, *exc):
        _grad_sink.grads = self.outer


class Function:
    """One differentiable operation. Subclasses write two static methods on numpy arrays:

        forward(ctx, *inputs, **options) -> output array
        backward(ctx, grad_output) -> one gradient (or None) per positional input

    `ctx` is the Function instance itself: forward stores what backward needs on it.
    """

    __slots__ = ("parents", "needs_input_grad", "saved_tensors", "__dict__")

    def save_for_backward(self, *arrays):
        self.saved_tensors = arrays

    @classmethod
    def apply(cls, *inputs, **options):
        """Run forward on the inputs' arrays; when any input needs a gradient (and grad mode is
        on), record this Function on the result. Called for every op, so it does nothing more."""
        ctx = cls()
        raw, needs, any_needs = [], [], False
        for x in inputs:
            if isinstance(x, Tensor):
                raw.append(x.data)
                needs.append(x.requires_grad)
                any_needs = any_needs or x.requires_grad
            else:
                raw.append(x)
                needs.append(False)
        out = cls.forward(ctx, *raw, **options)
        result = Tensor._wrap(out)
        if any_needs and _grad_mode.enabled:
            result.requires_grad = True
            ctx.parents = inputs
            ctx.needs_input_grad = needs
            result._ctx = ctx
        return result

    @staticmethod
    def forward(ctx, *inputs, **options):
        raise NotImplementedError

    @staticmethod
    def backward(ctx, grad):
        raise NotImplementedError


def _as_array(data, dtype) -> np.ndarray:
    """numpy arrays keep their dtype (float64 where asked); Python numbers and lists become float32."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, np.ndarray):
        return data
    array = np.asarray(data)
    return array.astype(np.float32) if array.dtype == np.float64 else array


class Tensor:
    __slots__ = ("data", "grad", "requires_grad", "_ctx", "__weakref__")
    __array_priority__ = 1000  # so that `ndarray * Tensor` calls Tensor.__rmul__

    def __init__(self, data, requires_grad: bool = False, dtype=None, _copy: bool = False):
        self.data = np.array(data, dtype=dtype) if _copy else _as_array(data, dtype)
        self.grad: np.ndarray | None = None
        self.requires_grad = requires_grad
        self._ctx: Function | None = None

    def _accumulate_grad(self, g: np.ndarray) -> None:
        """self.grad += g, in a fresh array (as in PyTorch); subclasses may keep their own."""
        self.grad = np.array(g, dtype=self.dtype) if self.grad is None else self.grad + g

    @classmethod
    def _wrap(cls, out) -> "Tensor":
        """A Tensor around a Function's result, without __init__'s checks (the per-op fast path)."""
        t = cls.__new__(cls)
        t.data = out if type(out) is np.ndarray else _as_array(out, None)
        t.grad, t.requires_grad, t._ctx = None, False, None
        return t

    # ----------------------------------------------------------------- basics
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        return self.data

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def item(self):
        return self.data.item()

    def detach(self) -> "Tensor":
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        self.requires_grad = flag
        return self

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({np.array2string(self.data, precision=4, separator=', ')}{grad})"

    # ----------------------------------------------------------------- autograd
    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's `.grad`, visiting each node once.

        The graph is freed as it is walked, so a second backward through it needs a new forward.
        """
        if not self.requires_grad:
            raise RuntimeError("backward() on a tensor that does not require grad")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() of a tensor of shape {self.shape} needs an explicit gradient "
                    "of that shape; only a scalar (one element) gets the implicit gradient 1"
                )
            grad = np.ones_like(self.data)
        else:
            grad = _as_array(grad, self.dtype)
            if grad.shape != self.shape:
                raise ValueError(f"gradient shape {grad.shape} does not match tensor shape {self.shape}")

        if not _trained:
            _first_backward()
        order = _topological_order(self)
        grads = {id(self): grad}
        for node in reversed(order):  # outputs before inputs
            g = grads.pop(id(node), None)
            ctx = node._ctx
            if ctx is None:  # a leaf: accumulate
                if g is not None:
                    accumulate_grad(node, g)
                continue
            node._ctx = None  # free the graph as we go
            if g is None:
                continue
            input_grads = ctx.backward(ctx, g)
            if not isinstance(input_grads, tuple):
                input_grads = (input_grads,)
            for parent, needs, pg in zip(ctx.parents, ctx.needs_input_grad, input_grads):
                if needs and pg is not None:
                    key = id(parent)
                    grads[key] = grads[key] + pg if key in grads else pg

    # ----------------------------------------------------------------- operators
    # Bound explicitly (not monkey-patched) so that grep finds each one.
    def __add__(self, other): return _ops.Add.apply(self, other)
    def __radd__(self, other): return _ops.Add.apply(other, self)
    def __sub__(self, other): return _ops.Sub.apply(self, other)
    def __rsub__(self, other): return _ops.Sub.apply(other, self)
    def __mul__(self, other): return _ops.Mul.apply(self, other)
    def __rmul__(self, other): return _ops.Mul.apply(other, self)
    def __truediv__(self, other): return _ops.Div.apply(self, other)
    def __rtruediv__(self, other): return _ops.Div.apply(other, self)
    def __pow__(self, exponent): return _ops.Pow.apply(self, exponent=float(exponent))
    def __neg__(self): return _ops.Neg.apply(self)
    def __matmul__(self, other): return _ops.MatMul.apply(self, other)
    def __rmatmul__(self, other): return _ops.MatMul.apply(other, self)
    def __getitem__(self, index): return _ops.GetItem.apply(self, index=_raw_index(index))

    def sum(self, axis=None, keepdims=False): return _ops.Sum.apply(self, axis=axis, keepdims=keepdims)
    def mean(self, axis=None, keepdims=False): return _ops.Mean.apply(self, axis=axis, keepdims=keepdims)
    def max(self, axis=None, keepdims=False): return _ops.Max.apply(self, axis=axis, keepdims=keepdims)
    def exp(self): return _ops.Exp.apply(self)
    def log(self): return _ops.Log.apply(self)
    def sqrt(self): return _ops.Sqrt.apply(self)
    def tanh(self): return _ops.Tanh.apply(self)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return _ops.Reshape.apply(self, shape=tuple(shape))

    view = reshape

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return _ops.Permute.apply(self, axes=tuple(axes))

    def transpose(self, dim0: int = -2, dim1: int = -1):
        axes = list(range(self.ndim))
        axes[dim0], axes[dim1] = axes[dim1], axes[dim0]
        return _ops.Permute.apply(self, axes=tuple(axes))

    @property
    def T(self):
        return _ops.Permute.apply(self, axes=tuple(reversed(range(self.ndim))))


_trained = False  # whether this process has run a backward yet


def _first_backward() -> None:
    """Training starts: keep its freed temporaries in malloc's heap for the next step (see
    tinytorch.memory.tune_malloc_on_first_use; imported here, not at import: it loads ctypes)."""
    global _trained
    _trained = True
    from .memory import tune_malloc_on_first_use

    tune_malloc_on_first_use()


def accumulate_grad(leaf: Tensor, g: np.ndarray) -> None:
    """leaf.grad += g, where leaf.grad None counts as 0 (or the same into collect_grads' dict).
    g may be shared with other nodes, so it is copied, never kept (leaf._accumulate_grad)."""
    sink = _grad_sink.grads
    if sink is not None:
        sink[leaf] = sink[leaf] + g if leaf in sink else np.array(g, dtype=leaf.dtype)
        return
    leaf._accumulate_grad(g)


def _raw_index(index):
    """Tensors used as indices become their integer arrays."""
    if isinstance(index, Tensor):
        return index.data
    if isinstance(index, tuple):
        return tuple(i.data if isinstance(i, Tensor) else i for i in index)
    return index


def _topological_order(root: Tensor) -> list:
    """Nodes that need a gradient, each once, every node after all of its inputs.

    Iterative depth-first search: deep graphs (long training sequences) cannot overflow the stack,
    and a node reached along many paths is expanded only the first time.
    """
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, inputs_done = stack.pop()
        if inputs_done:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        if node._ctx is not None:
            for parent in node._ctx.parents:
                if isinstance(parent, Tensor) and parent.requires_grad and id(parent) not in seen:
                    stack.append((parent, False))
    return order


# The operators above call into functions.py, which itself needs Function and Tensor from here:
# importing it last lets both modules see each other fully defined.
from . import functions as _ops  # noqa: E402
