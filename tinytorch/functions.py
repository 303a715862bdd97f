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
# Sizes at the kit's models: N = B*T rows of C = 16..128 features. Short rows make numpy's
# per-row reductions slow, and every pass over an (N, C) array costs memory traffic, so these
# ops sum rows with a BLAS matrix-vector product and reuse buffers in place where they can.
@lru_cache(maxsize=None)
def _ones(n: int, dtype) -> np.ndarray:
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False  # shared by every caller
    return ones


def _row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, (..., C) -> (...), as one matrix-vector product on the 2-D view
    (N, C) @ (C,): ~6x faster than x.sum(-1) on short rows, and one BLAS call, not one per batch."""
    n = x.shape[-1]
    return (x.reshape(-1, n) @ _ones(n, x.dtype)).reshape(x.shape[:-1])


def _column_sum(x2d: np.ndarray) -> np.ndarray:
    """Sum over rows, (N, C) -> (C,)."""
    return _ones(x2d.shape[0], x2d.dtype) @ x2d


_GELU_C = math.sqrt(2.0 / math.pi)
_GELU_A = -2.0 * _GELU_C  # -2u = x * (_GELU_A + _GELU_B * x^2)
_GELU_B = -2.0 * _GELU_C * 0.044715


# The kernels: plain functions on numpy arrays that the Functions below run in their forward, and
# that generation's cached decoder (tinytorch.generate) calls on its small arrays, with no autograd.
def linear(x2d: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """x2d (N, in) @ weight (in, out) + bias (out,) -> (N, out), in a fresh array."""
    y = x2d @ weight
    if bias is not None:
        y += bias
    return y


def normalize(x2d: np.ndarray, eps: float):
    """Each row of x2d (N, C) to zero mean and unit variance: (xhat (N, C), 1/std: (N,), or a
    float when N is 1). LayerNorm's scale and shift come after (or, in the cached decoder, fold
    into the next matmul)."""
    n = x2d.shape[1]
    if len(x2d) == 1:
        # One row (generating one sequence): Python floats for its mean and 1/std, 2x faster than
        # the row machinery below, on an array so small that every numpy call costs a microsecond.
        centered = x2d - float(np.add.reduce(x2d, axis=None)) / n
        flat = centered.reshape(n)  # a view
        rstd = 1.0 / math.sqrt(float(flat @ flat) / n + eps)
        centered *= rstd
        return centered, rstd
    ones = _ones(n, x2d.dtype)
    xhat = x2d - ((x2d @ ones) * (1.0 / n))[:, None]  # centered, (N, C)
    rstd = 1.0 / np.sqrt((xhat * xhat) @ ones * (1.0 / n) + eps)  # (N,) 1 / std
    xhat *= rstd[:, None]  # now normalized
    return xhat, rstd


# Elementwise chains (GELU, LayerNorm's backward) run over blocks of about this many elements:
# each step of a chain is one pass over its arrays, and a block's arrays stay in the core's L2
# cache between passes instead of travelling to and from L3 or memory every time. Measured on the
# copilot's GELU, (2048, 384): forward and backward 3.9 ms in whole arrays, 2.6 ms in blocks.
# Much smaller blocks pay numpy's ~1 us per call too often.
_BLOCK_ELEMENTS = 1 << 16


def _row_blocks(rows: int, width: int) -> list:
    """Slices of `rows` rows, about _BLOCK_ELEMENTS elements each (at least one row)."""
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    return [slice(i, i + step) for i in range(0, rows, step)]


def gelu_gate(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sigmoid(2u), u = c (x + 0.044715 x^3): GPT-2's GELU is x * gelu_gate(x) (see GELU).
    Into `out` (x's shape) when given, else a fresh array."""
    s = np.multiply(x, x, out=out)
    s *= _GELU_B
    s += _GELU_A
    s *= x  # -2u
    with np.errstate(over="ignore"):
        np.exp(s, out=s)
    s += 1.0
    np.reciprocal(s, out=s)  # sigmoid(2u)
    return s


def gelu(x: np.ndarray) -> np.ndarray:
    return x * gelu_gate(x)


class Linear(Function):
    """y = x @ weight + bias, with weight of shape (in, out) as GPT-2 stores it.

    x: (..., in)  weight: (in, out)  bias: (out,) or None  ->  y: (..., out)

    Every product runs on the 2-D view x2d (N, in), N = all leading dims together: numpy
    multiplies a 3-D array by a matrix as one BLAS call per batch element, the 2-D view as one.
    """

    @staticmethod
    def forward(ctx, x, weight, bias=None):
        x2d = x.reshape(-1, x.shape[-1])  # (N, in)
        y = linear(x2d, weight, bias)  # (N, out)
        ctx.save_for_backward(x2d, weight)
        ctx.x_shape = x.shape
        return y.reshape(*x.shape[:-1], weight.shape[1])

    @staticmethod
    def backward(ctx, grad):
        x2d, weight = ctx.saved
        needs = ctx.needs_grad
        grad2d = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_x = (grad2d @ weight.T).reshape(ctx.x_shape) if needs[0] else None  # (N, in)
        grad_w = x2d.T @ grad2d if needs[1] else None  # (in, N) @ (N, out)
        grad_b = _column_sum(grad2d) if len(needs) > 2 and needs[2] else None  # (out,)
        return grad_x, grad_w, grad_b


class LayerNorm(Function):
    """Normalize the last axis to zero mean and unit variance, then scale and shift.

    x: (..., C)  weight, bias: (C,). Works on the 2-D view (N, C).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, eps=1e-5):
        xhat, rstd = normalize(x.reshape(-1, x.shape[-1]), eps)  # (N, C), (N,) or a float
        rstd = np.asarray(rstd, dtype=x.dtype).reshape(-1)
        y = xhat * weight
        y += bias
        ctx.save_for_backward(xhat, rstd, weight)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, weight = ctx.saved  # (N, C), (N,), (C,)
        n = xhat.shape[1]
        grad2d = grad.reshape(-1, n)
        gx = grad2d * xhat  # (N, C), used twice below
        grad_w = _column_sum(gx)
        grad_b = _column_sum(grad2d)
        # With g = grad * weight (the gradient reaching xhat), d/dx of (x - mean) * rstd is
        #   rstd * (g - mean(g) - xhat * mean(g * xhat)): the gradient through the mean and
        #   through the variance. Both means are matrix-vector products with `weight`:
        #   mean(g) = grad2d @ weight / n,  mean(g * xhat) = (grad2d * xhat) @ weight / n.
        mean_g = (grad2d @ weight) * (1.0 / n)  # (N,)
        mean_gx = (gx @ weight) * (1.0 / n)  # (N,)
        grad_x = np.multiply(grad2d, weight, out=gx)  # g, reusing gx's buffer
        grad_x -= mean_g[:, None]
        grad_x -= xhat * mean_gx[:, None]
        grad_x *= rstd[:, None]
        return grad_x.reshape(grad.shape), grad_w, grad_b


class GELU(Function):
    """GPT-2's GELU, the tanh approximation: 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3).

    Since 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)), it is x * sigmoid(2u): one exp,
    no tanh, computed in place in one buffer. Where -2u > 88, exp overflows float32 to inf and
    sigmoid correctly becomes 1 / inf = 0, so the overflow warning is silenced, not the value.
    """

    @staticmethod
    def forward(ctx, x):
        x2d = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)  # (N, W)
        s, y = np.empty_like(x2d), np.empty_like(x2d)
        for rows in _row_blocks(*x2d.shape):  # the chain in cache-sized blocks
            np.multiply(x2d[rows], gelu_gate(x2d[rows], out=s[rows]), out=y[rows])
        ctx.save_for_backward(x2d, s)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x2d, s = ctx.saved  # (N, W)
        grad2d = grad.reshape(x2d.shape)
        out = np.empty_like(x2d)
        blocks = _row_blocks(*x2d.shape)
        scratch = np.empty_like(x2d[blocks[0]])
        for rows in blocks:
            # d/dx [x s(2u)] = s + x s (1 - s) d(2u)/dx = s (1 + (1 - s) x d(2u)/dx),
            # with x d(2u)/dx = x (2c + 6c 0.044715 x^2) = x (-_GELU_A - 3 _GELU_B x^2)
            x, sb, t = x2d[rows], s[rows], out[rows]
            one_minus_s = np.subtract(1.0, sb, out=scratch[:len(x)])
            np.multiply(x, x, out=t)
            t *= -3.0 * _GELU_B
            t -= _GELU_A
            t *= x
            t *= one_minus_s
            t += 1.0
            t *= sb
            t *= grad2d[rows]
        return out.reshape(grad.shape)


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

    logits: (..., V)  targets: (...) integer ids; rows whose target is `ignore_index` count for
    nothing, in the loss or in the gradient, and the mean is over the remaining rows.
    """

    @staticmethod
    def forward(ctx, logits, targets, ignore_index=-100):
        ctx.logits_shape = logits.shape
        vocab = logits.shape[-1]
        logits, targets = logits.reshape(-1, vocab), targets.reshape(-1)  # (N, V), (N,)
        keep = targets != ignore_index
        count = int(np.count_nonzero(keep))
        safe = np.where(keep, targets, 0)  # a copy: the caller may reuse its targets array
        if safe.size and (safe.min() < 0 or safe.max() >= vocab):
            raise IndexError(f"target ids must lie in [0, {vocab}) or equal ignore_index={ignore_index}")
        rows = np.arange(len(safe))
        shifted = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(shifted)
        total = _row_sum(probs)
        probs /= total[:, None]
        # -log p(target) = log(sum(exp)) - shifted[target]: finite even where p underflows to 0
        nll = np.log(total) - shifted[rows, safe]
        loss = (nll.sum() if count == len(safe) else np.dot(nll, keep)) / max(count, 1)
        ctx.save_for_backward(probs, rows, safe, keep)
        ctx.count = count
        return np.asarray(loss, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        probs, rows, safe, keep = ctx.saved
        grad_logits = probs  # reused in place: the forward's probabilities are not needed again
        grad_logits[rows, safe] -= 1.0
        if ctx.count == len(safe):  # no ignored rows: one scale for all
            grad_logits *= grad / max(ctx.count, 1)
        else:
            grad_logits *= (keep * (grad / max(ctx.count, 1)))[:, None].astype(probs.dtype)
        return grad_logits.reshape(ctx.logits_shape), None


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


def attention_forward(q, k, v, causal: bool, scaled: bool = False):
    """softmax(q k^T / sqrt(D) + mask) v.  q: (..., Tq, D)  k, v: (..., Tk, D) -> (y, weights).
    scaled: q already holds the 1/sqrt(D) (the cached decoder folds it into its weights)."""
    scores = q @ k.swapaxes(-1, -2)  # (..., Tq, Tk)
    if not scaled:
        scores *= 1.0 / math.sqrt(q.shape[-1])
    if causal:
        scores += _causal_bias(q.shape[-2], k.shape[-2], scores.dtype)
    scores -= np.maximum.reduce(scores, axis=-1, keepdims=True)
    weights = np.exp(scores, out=scores)
    weights /= np.add.reduce(weights, axis=-1, keepdims=True)
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


# The training path of causal self-attention, fused. attention_forward above is the textbook
# form; this computes the same numbers with fewer passes over the (B, H, T, T) weights, which are
# the biggest arrays of a training step:
#
# 1. Query blocks. Queries t0..t1-1 see keys 0..t1-1 only, so each block of _QUERY_BLOCK queries
#    computes scores against that prefix of keys: for 4 blocks, 5/8 of the full T x T square.
#    Only the block's last square (the diagonal) needs the causal mask.
# 2. No max shift, when it is provably not needed. Softmax is the same whatever constant a row
#    is shifted by; the usual shift by the row's max only keeps exp from overflowing, and costs
#    two passes over the scores. Cauchy-Schwarz bounds every score of row i from small arrays:
#    |q_i . k_j| / sqrt(D) <= |q_i| max_{j<=i} |k_j| / sqrt(D) =: m_i. When every m_i of a block
#    is below _exp_limit (43 in float32), exp(score) lies in [e^-43, e^43]: no overflow, and no
#    underflow that could lose precision. Only a block with a larger bound pays for the max.
#    (Small problems, under _BOUND_MIN_SCORES scores, skip the bound: its dozen small numpy calls
#    cost more there than the two passes they save.)
# 3. Softmax backward with one (B, H, T) vector: sum_j w_ij (gy_i . v_j) = gy_i . y_i
#    (FlashAttention's trick), computed from the (B, T, C) arrays where it is one contiguous pass.
# 4. No transposed copies: q, k, v stay views of the packed qkv (BLAS takes strided matrices),
#    and matmul(..., out=view) writes y and the gradients straight into the (B, T, C) and packed
#    (B, T, 3C) layouts. Elementwise work on (B, H, T, D) views would be slow (numpy loops over
#    rows of D numbers), so the little of it there is (the scale, the norms) happens in (B, T, C).
_QUERY_BLOCK = 32
_BOUND_MIN_SCORES = 1 << 15


def _query_blocks(T: int) -> list:
    return [(start, min(start + _QUERY_BLOCK, T)) for start in range(0, T, _QUERY_BLOCK)]


@lru_cache(maxsize=64)
def _exp_limit(dtype, T: int) -> float:
    """The largest |score| for which exp(score) needs no shift: exp(+-limit) and T times exp(limit)
    are finite, and exp(-limit) >= sqrt(tiny), far from underflow."""
    info = np.finfo(dtype)
    return min(-0.5 * math.log(info.tiny), math.log(info.max) - math.log(T) - 1.0)


def _heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """(B, T, C) -> (B, H, T, D), a view."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def causal_attention_forward(qkv: np.ndarray, n_head: int):
    """Causal multi-head attention of the packed qkv (B, T, 3C) -> (y (B, T, C), weight blocks)."""
    B, T, C3 = qkv.shape
    C, H = C3 // 3, n_head
    D = C // H
    q_scaled = qkv[:, :, :C] * (1.0 / math.sqrt(D))  # (B, T, C), contiguous
    k_packed = qkv[:, :, C:2 * C]
    bound, limit = None, _exp_limit(qkv.dtype, T)
    if B * H * T * T >= _BOUND_MIN_SCORES:
        # the bound m_i = |q_i / sqrt(D)| max_{j<=i} |k_j| of row i's scores (see 2. above)
        q_norm = np.sqrt(_row_sum((q_scaled * q_scaled).reshape(B, T, H, D)))  # (B, T, H)
        k_norm = np.sqrt(_row_sum((k_packed * k_packed).reshape(B, T, H, D)))
        np.maximum.accumulate(k_norm, axis=1, out=k_norm)  # the largest |k_j| so far
        bound = (q_norm * k_norm).transpose(0, 2, 1)  # (B, H, T)
    q, k, v = _heads(q_scaled, H), _heads(k_packed, H), _heads(qkv[:, :, 2 * C:], H)  # (B, H, T, D)
    y = np.empty((B, T, C), dtype=qkv.dtype)
    y_heads = _heads(y, H)
    weights = []
    for t0, t1 in _query_blocks(T):
        # queries t0..t1-1 against keys 0..t1-1: scores, then softmax weights, (B, H, t1 - t0, t1)
        w = np.matmul(q[:, :, t0:t1], k[:, :, :t1].swapaxes(-1, -2))
        w[..., t0:] += _causal_bias(t1 - t0, t1 - t0, w.dtype)  # the diagonal square: -inf after i
        if bound is None or bound[:, :, t0:t1].max() > limit:  # scores may be large: the usual shift
            w -= w.max(axis=-1, keepdims=True)
        np.exp(w, out=w)
        w *= (1.0 / _row_sum(w))[..., None]
        np.matmul(w, v[:, :, :t1], out=y_heads[:, :, t0:t1])  # (B, H, t1 - t0, D) into y
        weights.append(w)
    return y, q_scaled, weights


def causal_attention_backward(qkv, q_scaled, weights, y, grad, n_head: int) -> np.ndarray:
    """Gradient of causal_attention_forward: grad (B, T, C) -> grad_qkv (B, T, 3C)."""
    B, T, C = grad.shape
    H = n_head
    D = C // H
    # delta_i = gy_i . y_i, per head: the softmax backward's row term (see 3. above)
    delta = _row_sum((grad * y).reshape(B, T, H, D)).transpose(0, 2, 1)  # (B, H, T)
    k_scaled = _heads(qkv[:, :, C:2 * C] * (1.0 / math.sqrt(D)), H)  # for grad_q: the scale folded in
    q, v, grad_y = _heads(q_scaled, H), _heads(qkv[:, :, 2 * C:], H), _heads(grad, H)
    grad_qkv = np.empty((B, T, 3, H, D), dtype=grad.dtype)  # packed like qkv
    grad_q, grad_k, grad_v = grad_qkv.transpose(2, 0, 3, 1, 4)  # (B, H, T, D) views
    for (t0, t1), w in reversed(list(zip(_query_blocks(T), weights))):  # the last block sees every key
        # d loss / d scores = w * (gy . v_j - delta), (B, H, t1 - t0, t1)
        grad_s = np.matmul(grad_y[:, :, t0:t1], v[:, :, :t1].swapaxes(-1, -2))
        grad_s -= delta[:, :, t0:t1, None]
        grad_s *= w
        np.matmul(grad_s, k_scaled[:, :, :t1], out=grad_q[:, :, t0:t1])
        if t1 == T:  # the first block handled writes; the others add to the keys they saw
            np.matmul(grad_s.swapaxes(-1, -2), q[:, :, t0:t1], out=grad_k)
            np.matmul(w.swapaxes(-1, -2), grad_y[:, :, t0:t1], out=grad_v)
        else:
            grad_k[:, :, :t1] += np.matmul(grad_s.swapaxes(-1, -2), q[:, :, t0:t1])
            grad_v[:, :, :t1] += np.matmul(w.swapaxes(-1, -2), grad_y[:, :, t0:t1])
    return grad_qkv.reshape(B, T, 3 * C)


class CausalSelfAttention(Function):
    """Multi-head causal attention from the packed projection GPT-2 computes in one matmul.

    qkv: (B, T, 3C), the c_attn output [q | k | v], each split into n_head heads of C/n_head.
    Returns (B, T, C), the heads side by side, ready for c_proj. With a `cache` (generation, no
    gradient), the new keys and values are appended to it and the queries attend to all of them,
    by the textbook attention_forward. `attentions`, a list, receives the attention weights
    (B, H, T, T_keys) that this call computed anyway (rows sum to 1; the future is 0).
    """

    @staticmethod
    def forward(ctx, qkv, n_head, cache=None, attentions=None):
        B, T, C3 = qkv.shape
        C = C3 // 3
        ctx.has_cache = cache is not None
        if cache is not None:
            q, k, v = qkv.reshape(B, T, 3, n_head, C // n_head).transpose(2, 0, 3, 1, 4)  # (B, H, T, D)
            k, v = cache.append(k, v)  # (B, H, T_past + T, D)
            y, weights = attention_forward(q, k, v, causal=True)
            if attentions is not None:
                attentions.append(weights)
            return y.transpose(0, 2, 1, 3).reshape(B, T, C)
        y, q_scaled, weights = causal_attention_forward(qkv, n_head)
        if attentions is not None:
            attentions.append(_whole_square(weights, T))
        ctx.save_for_backward(qkv, q_scaled, weights, y)
        ctx.n_head = n_head
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.has_cache:
            raise RuntimeError("attention over a KV cache is for generation only; it has no backward")
        return causal_attention_backward(*ctx.saved, grad, ctx.n_head), None


def _whole_square(blocks: list, T: int) -> np.ndarray:
    """causal_attention_forward's weight blocks, (B, H, t1 - t0, t1) each, as one (B, H, T, T)."""
    B, H = blocks[0].shape[:2]
    out = np.zeros((B, H, T, T), dtype=blocks[0].dtype)
    for (t0, t1), w in zip(_query_blocks(T), blocks):
        out[:, :, t0:t1, :t1] = w
    return out
