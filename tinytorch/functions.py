"""Every differentiable operation, as a Function with a hand-written backward on numpy arrays.

The first half is the general-purpose ops behind Tensor's operators. The second half is the hot
path of a transformer, fused: one Function each for linear, layer norm, GELU, embedding,
attention and cross-entropy, so that a training step is a few dozen numpy calls with no Python
loop over batch, heads or positions.
"""

from __future__ import annotations

import math
from functools import lru_cache

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
        a, b = ctx.saved
        grad_a = unbroadcast(grad * b, np.shape(a)) if ctx.needs_grad[0] else None
        grad_b = unbroadcast(grad * a, np.shape(b)) if ctx.needs_grad[1] else None
        return grad_a, grad_b


class Div(Function):
    @staticmethod
    def forward(ctx, a, b):
        ctx.save_for_backward(a, b)
        return np.divide(a, b)

    @staticmethod
    def backward(ctx, grad):
        a, b = ctx.saved
        grad_a = grad / b
        grad_b = unbroadcast(-grad_a * a / b, np.shape(b)) if ctx.needs_grad[1] else None
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
        (a,) = ctx.saved
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
        return grad * ctx.saved[0]


class Log(Function):
    @staticmethod
    def forward(ctx, a):
        ctx.save_for_backward(a)
        return np.log(a)

    @staticmethod
    def backward(ctx, grad):
        return grad / ctx.saved[0]


class Sqrt(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.sqrt(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        return grad * 0.5 / ctx.saved[0]


class Tanh(Function):
    @staticmethod
    def forward(ctx, a):
        out = np.tanh(a)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
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
        a, b = ctx.saved
        grad_a = grad_b = None
        if ctx.needs_grad[0]:
            grad_a = unbroadcast(np.matmul(grad, np.swapaxes(b, -1, -2)), a.shape)
        if ctx.needs_grad[1]:
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
        (share,) = ctx.saved
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


# ===================================================================== fused transformer ops
def _row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, (..., C) -> (...). A matrix-vector product beats np.sum on short rows."""
    return x @ np.ones(x.shape[-1], dtype=x.dtype)


def _column_sum(x2d: np.ndarray) -> np.ndarray:
    """Sum over rows, (N, C) -> (C,)."""
    return np.ones(x2d.shape[0], dtype=x2d.dtype) @ x2d


class Linear(Function):
    """y = x @ weight + bias, with weight of shape (in, out) as GPT-2 stores it.

    x: (..., in)  weight: (in, out)  bias: (out,) or None  ->  y: (..., out)
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        ctx.save_for_backward(x, weight)
        y = x @ weight
        if bias is not None:
            y += bias
        return y

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved
        grad2d = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_x = grad @ weight.T if ctx.needs_grad[0] else None
        grad_w = x.reshape(-1, x.shape[-1]).T @ grad2d if ctx.needs_grad[1] else None
        grad_b = _column_sum(grad2d) if len(ctx.needs_grad) > 2 and ctx.needs_grad[2] else None
        return grad_x, grad_w, grad_b


class LayerNorm(Function):
    """Normalize the last axis to zero mean and unit variance, then scale and shift.

    x: (..., C)  weight, bias: (C,)
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        n = x.shape[-1]
        centered = x - (_row_sum(x) / n)[..., None]
        variance = _row_sum(centered * centered) / n
        rstd = (1.0 / np.sqrt(variance + eps))[..., None]  # (..., 1)
        xhat = centered * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved
        n = xhat.shape[-1]
        grad2d = grad.reshape(-1, n)
        grad_w = _column_sum(grad2d * xhat.reshape(-1, n))
        grad_b = _column_sum(grad2d)
        # d/dx of (x - mean) / std: the gradient through the mean and through the variance
        gxhat = grad * weight
        mean_g = (_row_sum(gxhat) / n)[..., None]
        mean_gx = (_row_sum(gxhat * xhat) / n)[..., None]
        grad_x = (gxhat - mean_g - xhat * mean_gx) * rstd
        return grad_x, grad_w, grad_b


_GELU_C = math.sqrt(2.0 / math.pi)


class GELU(Function):
    """GPT-2's GELU, the tanh approximation: 0.5 x (1 + tanh(c (x + 0.044715 x^3))).

    Written as x * sigmoid(2u), the same function with one exp and no tanh.
    """

    @staticmethod
    def forward(ctx, x):
        x2 = x * x
        u2 = x * (x2 * (2 * _GELU_C * 0.044715) + 2 * _GELU_C)  # 2u
        # exp(-2u) overflows float32 for 2u < -88, where sigmoid is 0 anyway: clip instead of warn
        s = np.exp(np.minimum(-u2, 80.0, out=u2), out=u2)
        s += 1.0
        np.reciprocal(s, out=s)  # sigmoid(2u)
        ctx.save_for_backward(x, x2, s)
        return x * s

    @staticmethod
    def backward(ctx, grad):
        x, x2, s = ctx.saved
        du2 = x2 * (6 * _GELU_C * 0.044715) + 2 * _GELU_C  # d(2u)/dx
        # d/dx [x s(2u)] = s + x s (1 - s) d(2u)/dx
        return grad * (s + x * s * (1.0 - s) * du2)


def _one_hot_product(ids: np.ndarray, grad2d: np.ndarray, num_rows: int) -> np.ndarray:
    """Scatter-add rows of grad2d into a (num_rows, C) table at `ids`: one_hot(ids).T @ grad2d.

    A dense one-hot matmul is several times faster than np.add.at for character vocabularies;
    for large tables it would be too big, and np.add.at does the same sum.
    """
    flat = ids.reshape(-1)
    if num_rows * flat.size <= 4_000_000:
        one_hot = np.zeros((flat.size, num_rows), dtype=grad2d.dtype)
        one_hot[np.arange(flat.size), flat] = 1.0
        return one_hot.T @ grad2d
    out = np.zeros((num_rows, grad2d.shape[1]), dtype=grad2d.dtype)
    np.add.at(out, flat, grad2d)
    return out


class Embedding(Function):
    """Look up rows of a table. ids: integer array (...); weight: (V, C) -> (..., C)."""

    @staticmethod
    def forward(ctx, weight, ids):
        ids = np.asarray(ids)
        if ids.size and (ids.min() < 0 or ids.max() >= weight.shape[0]):
            bad = ids[(ids < 0) | (ids >= weight.shape[0])][0]
            raise IndexError(f"id {bad} is outside the embedding table of {weight.shape[0]} rows")
        ctx.ids, ctx.num_rows = ids, weight.shape[0]
        return weight[ids]

    @staticmethod
    def backward(ctx, grad):
        return _one_hot_product(ctx.ids, grad.reshape(-1, grad.shape[-1]), ctx.num_rows), None


def _dropout_mask(shape, p, rng, dtype):
    return (rng.random(shape, dtype=np.float32) >= p).astype(dtype) * (1.0 / (1.0 - p))


class Dropout(Function):
    @staticmethod
    def forward(ctx, x, p, rng):
        ctx.mask = _dropout_mask(x.shape, p, rng, x.dtype)
        return x * ctx.mask

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.mask


def _softmax_last(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis, in a fresh array."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    e /= _row_sum(e)[..., None]
    return e


class Softmax(Function):
    @staticmethod
    def forward(ctx, x):
        out = _softmax_last(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return out * (grad - _row_sum(grad * out)[..., None])


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x):
        shifted = x - x.max(axis=-1, keepdims=True)
        out = shifted - np.log(_row_sum(np.exp(shifted)))[..., None]
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved
        return grad - np.exp(out) * _row_sum(grad)[..., None]


class CrossEntropy(Function):
    """Mean negative log-likelihood of `targets` under softmax(logits), fused.

    logits: (N, V)  targets: (N,) integer ids; rows whose target is `ignore_index` count for
    nothing, in the loss or in the gradient, and the mean is over the remaining rows.
    """

    @staticmethod
    def forward(ctx, logits, targets, ignore_index=-100):
        n, vocab = logits.shape
        keep = targets != ignore_index
        safe = np.where(keep, targets, 0)
        if safe.size and (safe.min() < 0 or safe.max() >= vocab):
            raise IndexError(f"target ids must lie in [0, {vocab}) or equal ignore_index={ignore_index}")
        rows = np.arange(n)
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(shifted)
        total = _row_sum(probs)
        probs /= total[:, None]
        count = int(keep.sum())
        # -log p(target) = log(sum(exp)) - shifted[target]: finite even where p underflows to 0
        nll = np.log(total) - shifted[rows, safe]
        loss = np.dot(nll, keep) / max(count, 1)
        ctx.save_for_backward(probs, safe, keep)
        ctx.count = count
        return np.asarray(loss, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        probs, safe, keep = ctx.saved
        grad_logits = probs  # reused in place: the forward's probabilities are not needed again
        grad_logits[np.arange(len(safe)), safe] -= 1.0
        grad_logits *= (keep * (grad / max(ctx.count, 1)))[:, None].astype(probs.dtype)
        return grad_logits, None


# ----------------------------------------------------------------------------- attention
@lru_cache(maxsize=64)
def _causal_bias(t_query: int, t_key: int, dtype) -> np.ndarray:
    """Additive mask (t_query, t_key): 0 where key j is visible to query i, -inf after it.

    Queries are the last t_query positions of t_key (a KV cache holds the first ones), so query
    i sits at absolute position i + t_key - t_query and sees keys 0 .. that position.
    """
    future = np.triu(np.ones((t_query, t_key), dtype=bool), k=1 + t_key - t_query)
    bias = np.where(future, -np.inf, 0.0).astype(dtype)
    bias.flags.writeable = False
    return bias


def attention_forward(q, k, v, causal: bool):
    """softmax(q k^T / sqrt(D) + mask) v.  q: (..., Tq, D)  k, v: (..., Tk, D) -> (y, weights)."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    scores = q @ np.swapaxes(k, -1, -2)  # (..., Tq, Tk)
    scores *= scale
    if causal:
        scores += _causal_bias(q.shape[-2], k.shape[-2], scores.dtype)
    scores -= scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores, out=scores)
    weights /= _row_sum(weights)[..., None]
    return weights @ v, weights


def attention_backward(q, k, v, weights, grad_y):
    """Gradients of attention_forward for q, k, v. Masked weights are 0, so they pass none."""
    scale = 1.0 / math.sqrt(q.shape[-1])
    grad_v = np.swapaxes(weights, -1, -2) @ grad_y
    grad_w = grad_y @ np.swapaxes(v, -1, -2)  # (..., Tq, Tk)
    # softmax backward: w * (g - sum(g * w)), then the 1/sqrt(D) scale
    grad_s = grad_w - _row_sum(grad_w * weights)[..., None]
    grad_s *= weights
    grad_s *= scale
    grad_q = grad_s @ k
    grad_k = np.swapaxes(grad_s, -1, -2) @ q
    return grad_q, grad_k, grad_v


class ScaledDotProductAttention(Function):
    """q: (..., Tq, D)  k, v: (..., Tk, D) -> (..., Tq, D)."""

    @staticmethod
    def forward(ctx, q, k, v, causal=True):
        y, weights = attention_forward(q, k, v, causal)
        ctx.save_for_backward(q, k, v, weights)
        return y

    @staticmethod
    def backward(ctx, grad):
        return attention_backward(*ctx.saved, grad)


class CausalSelfAttention(Function):
    """Multi-head causal attention from the packed projection GPT-2 computes in one matmul.

    qkv: (B, T, 3C), the c_attn output [q | k | v], each split into n_head heads of C/n_head.
    Returns (B, T, C), the heads side by side, ready for c_proj. With a `cache` (generation, no
    gradient), the new keys and values are appended to it and the queries attend to all of them.
    """

    @staticmethod
    def forward(ctx, qkv, n_head, cache=None):
        B, T, C3 = qkv.shape
        C = C3 // 3
        q, k, v = qkv.reshape(B, T, 3, n_head, C // n_head).transpose(2, 0, 3, 1, 4)  # 3 x (B, H, T, D)
        if cache is not None:
            k, v = cache.append(k, v)  # (B, H, T_past + T, D)
        y, weights = attention_forward(q, k, v, causal=True)
        ctx.save_for_backward(q, k, v, weights)
        ctx.has_cache = cache is not None
        return y.transpose(0, 2, 1, 3).reshape(B, T, C)

    @staticmethod
    def backward(ctx, grad):
        if ctx.has_cache:
            raise RuntimeError("attention over a KV cache is for generation only; it has no backward")
        q, k, v, weights = ctx.saved
        B, H, T, D = q.shape
        grad_y = grad.reshape(B, T, H, D).transpose(0, 2, 1, 3)  # (B, H, T, D)
        grads = attention_backward(q, k, v, weights, grad_y)
        grad_qkv = np.empty((B, T, 3, H, D), dtype=grad.dtype)
        for i, g in enumerate(grads):  # three copies into the packed layout, not a loop over data
            grad_qkv[:, :, i] = g.transpose(0, 2, 1, 3)
        return grad_qkv.reshape(B, T, 3 * H * D), None
