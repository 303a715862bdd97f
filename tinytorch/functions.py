"""The primitive differentiable operations behind Tensor's operators, each a Function with a
hand-written backward on numpy arrays. The transformer's fused operations are in fused.py."""

from __future__ import annotations

import numpy as np

from .tensor import Function


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum `grad` down to `shape`: the adjoint of numpy broadcasting, used by every binary op."""
    if grad.shape == shape:
        return grad
    leading = grad.ndim - len(shape)
    if leading:
        grad = grad.sum(axis=tuple(range(leading)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


# ===================================================================== elementwise and shape ops
class Add(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = np.shape(a), np.shape(b)
        return np.add(a, b)

    @staticmethod
    def backward(ctx, grad):
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad, shape_a), unbroadcast(grad, shape_b)


class Sub(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.shapes = np.shape(a), np.shape(b)
        return np.subtract(a, b)

    @staticmethod
    def backward(ctx, grad):
        shape_a, shape_b = ctx.shapes
        return unbroadcast(grad, shape_a), unbroadcast(-grad, shape_b)


class Mul(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.multiply(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = unbroadcast(grad * b, np.shape(a)) if ctx.needs_input_grad[0] else None
        grad_b = unbroadcast(grad * a, np.shape(b)) if ctx.needs_input_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = grad / b
        grad_b = unbroadcast(-grad_a * a / b, np.shape(b)) if ctx.needs_input_grad[1] else None
        return unbroadcast(grad_a, np.shape(a)), grad_b


class Pow(Function):
    """a ** exponent, for a constant exponent."""

    @staticmethod
    def forward(ctx, a, exponent):
        ctx.save_for_backward(a)
        ctx.exponent = exponent
        return np.power(a, exponent)

    @staticmethod
    def backward(ctx, grad):
        (a,) = ctx.saved_tensors
        return grad * ctx.exponent * np.power(a, ctx.exponent - 1)


class Neg(Function):
    @staticmethod
    def forward(ctx, a):
        return np.negative(a)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class Exp(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.exp(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.saved_tensors[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.saved_tensors[0]


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * 0.5 / ctx.saved_tensors[0]


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad * (1.0 - out * out)


class MatMul(Function):
    """a @ b for 2-D and batched (broadcast) operands."""

    @staticmethod
    def forward(ctx, a, b):
        if np.ndim(a) < 2 or np.ndim(b) < 2:
            raise ValueError(f"matmul needs operands of 2 or more dimensions, got shapes {np.shape(a)} and {np.shape(b)}")
        ctx.save_for_backward(a, b)
        return np.matmul(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved_tensors
        grad_a = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_a = unbroadcast(np.matmul(grad, np.swapaxes(b, -1, -2)), a.shape)
        if ctx.needs_input_grad[1]:
            if b.ndim == 2:  # a weight shared by every row of a batch: one 2-D product, no batch sum
                grad_b = a.reshape(-1, a.shape[-1]).T @ grad.reshape(-1, grad.shape[-1])
            else:
                grad_b = unbroadcast(np.matmul(np.swapaxes(a, -1, -2), grad), b.shape)
        return grad_a, grad_b


def _reduction_grad(grad, shape, axis, keepdims):
    """Broadcast the gradient of a reduction back over the axes it reduced."""
    if axis is not None and not keepdims:
        axes = (axis,) if isinstance(axis, int) else axis
        grad = np.expand_dims(grad, tuple(a % len(shape) for a in axes))
    return np.broadcast_to(grad, shape)


class Sum(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        ctx.args = a.shape, axis, keepdims
        return np.asarray(np.sum(a, axis=axis, keepdims=keepdims))

    @staticmethod
    def backward(ctx, grad):
        return _reduction_grad(grad, *ctx.args)


class Mean(Function):
    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        out = np.asarray(np.mean(a, axis=axis, keepdims=keepdims))
        ctx.args = a.shape, axis, keepdims
        ctx.count = a.size // max(out.size, 1)
        return out

    @staticmethod
    def backward(ctx, grad):
        return _reduction_grad(grad / ctx.count, *ctx.args)


class Max(Function):
    """Maximum over an axis; ties share the gradient equally (as torch.amax)."""

    @staticmethod
    def forward(ctx, a, axis=None, keepdims=False):
        out = np.max(a, axis=axis, keepdims=True)
        winners = a == out
        ctx.save_for_backward(winners / winners.sum(axis=axis, keepdims=True))
        ctx.args = a.shape, axis, keepdims
        return out if keepdims else np.asarray(np.squeeze(out, axis=axis))

    @staticmethod
    def backward(ctx, grad):
        (share,) = ctx.saved_tensors
        return _reduction_grad(grad, *ctx.args) * share


class Reshape(Function):
    @staticmethod
    def forward(ctx, a, shape):
        ctx.input_shape = a.shape
        return a.reshape(shape)

    @staticmethod
    def backward(ctx, grad):
        return grad.reshape(ctx.input_shape)


class Permute(Function):
    @staticmethod
    def forward(ctx, a, axes):
        ctx.axes = axes
        return a.transpose(axes)

    @staticmethod
    def backward(ctx, grad):
        return grad.transpose(np.argsort(ctx.axes))


def _is_basic_index(index) -> bool:
    """Slices, ints, None and Ellipsis select each element at most once (no repeats)."""
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(p, (slice, int, type(None), type(Ellipsis))) for p in parts)


class GetItem(Function):
    @staticmethod
    def forward(ctx, a, index):
        ctx.shape, ctx.dtype, ctx.index = a.shape, a.dtype, index
        return np.asarray(a[index])

    @staticmethod
    def backward(ctx, grad):
        out = np.zeros(ctx.shape, dtype=ctx.dtype)
        if _is_basic_index(ctx.index):
            out[ctx.index] = grad
        else:  # integer arrays may repeat an element: accumulate rather than assign
            np.add.at(out, ctx.index, grad)
        return out
