"""The numpy kernels of a transformer: plain functions on arrays, no autograd. The fused Functions
(fused.py) run them in their forward and backward, and generation's KV-cached decoder
(generate.py) calls the same ones on its small arrays, so a forward pass has one implementation.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np


# Sizes at the kit's models: N = B*T rows of C = 16..128 features. Short rows make numpy's
# per-row reductions slow, and every pass over an (N, C) array costs memory traffic, so these
# ops sum rows with a BLAS matrix-vector product and reuse buffers in place where they can.
@lru_cache(maxsize=None)
def _ones(n: int, dtype) -> np.ndarray:
    ones = np.ones(n, dtype=dtype)
    ones.flags.writeable = False  # shared by every caller
    return ones


def row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, (..., C) -> (...), as one matrix-vector product on the 2-D view
    (N, C) @ (C,): ~6x faster than x.sum(-1) on short rows, and one BLAS call, not one per batch."""
    n = x.shape[-1]
    return (x.reshape(-1, n) @ _ones(n, x.dtype)).reshape(x.shape[:-1])


def column_sum(x2d: np.ndarray) -> np.ndarray:
    """Sum over rows, (N, C) -> (C,)."""
    return _ones(x2d.shape[0], x2d.dtype) @ x2d


GELU_C = math.sqrt(2.0 / math.pi)
GELU_A = -2.0 * GELU_C  # -2u = x * (GELU_A + GELU_B * x^2); d(2u)/dx = -GELU_A - 3 GELU_B x^2
GELU_B = -2.0 * GELU_C * 0.044715


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
    rstd = 1.0 / np.sqrt(np.einsum("ij,ij->i", xhat, xhat) * (1.0 / n) + eps)  # (N,) 1 / std; no temporary
    xhat *= rstd[:, None]  # now normalized
    return xhat, rstd


def fold_layer_norm(ln_weight: np.ndarray, ln_bias: np.ndarray, weight: np.ndarray, bias: np.ndarray | None):
    """LayerNorm's scale and shift folded into the matmul after it:
    (xhat * ln_weight + ln_bias) @ weight + bias = xhat @ (ln_weight[:, None] * weight) + (ln_bias @ weight + bias).
    -> (folded weight (C, out), folded bias (out,)). Two passes over (C, out) weights instead of
    two over the (N, C) activations."""
    folded_bias = ln_bias @ weight if bias is None else ln_bias @ weight + bias
    return ln_weight[:, None] * weight, folded_bias


def normalize_backward(grad_xhat: np.ndarray, xhat: np.ndarray, rstd: np.ndarray) -> np.ndarray:
    """The gradient of normalize's input, given the gradient reaching its output xhat, (N, C) each:
    rstd * (g - mean(g) - xhat * mean(g * xhat)), the paths through the mean and the variance.
    Written into grad_xhat (the caller's own fresh array)."""
    n = xhat.shape[1]
    mean_g = (grad_xhat @ _ones(n, xhat.dtype)) * (1.0 / n)  # (N,)
    mean_gx = np.einsum("ij,ij->i", grad_xhat, xhat) * (1.0 / n)  # (N,), no temporary
    grad_xhat -= mean_g[:, None]
    grad_xhat -= xhat * mean_gx[:, None]
    grad_xhat *= rstd[:, None]
    return grad_xhat


# Elementwise chains (GELU, LayerNorm's backward) run over blocks of about this many elements:
# each step of a chain is one pass over its arrays, and a block's arrays stay in the core's L2
# cache between passes instead of travelling to and from L3 or memory every time (figures in
# benchmarks/README.md). Much smaller blocks pay numpy's ~1 us per call too often.
_BLOCK_ELEMENTS = 1 << 16


def row_blocks(rows: int, width: int) -> list:
    """Slices of `rows` rows, about _BLOCK_ELEMENTS elements each (at least one row)."""
    step = max(1, _BLOCK_ELEMENTS // max(width, 1))
    return [slice(i, i + step) for i in range(0, rows, step)]


def gelu_gate(x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """sigmoid(2u) = (1 + tanh(u)) / 2, u = c (x + 0.044715 x^3): GPT-2's GELU is x * gelu_gate(x)
    (see FusedGELU). Into `out` (x's shape) when given, else a fresh array. numpy's float32 tanh
    costs less than exp followed by a reciprocal, and it cannot overflow."""
    s = np.multiply(x, x, out=out)
    s *= GELU_C * 0.044715
    s += GELU_C
    s *= x  # u
    np.tanh(s, out=s)
    s *= 0.5
    s += 0.5
    return s


def gelu(x: np.ndarray) -> np.ndarray:
    return x * gelu_gate(x)


def one_hot_product(ids: np.ndarray, grad2d: np.ndarray, num_rows: int) -> np.ndarray:
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


def dropout_mask(shape, p, rng, dtype):
    return (rng.random(shape, dtype=np.float32) >= p).astype(dtype) * (1.0 / (1.0 - p))


def softmax(x: np.ndarray, out: np.ndarray | None = None, shift: bool = True) -> np.ndarray:
    """Softmax over the last axis, into `out` (x itself for in place) or a fresh array.
    shift=False skips subtracting each row's max, which only keeps exp from overflowing: for
    callers that know exp(x) stays finite (see causal_attention_forward)."""
    if shift:
        out = np.subtract(x, np.maximum.reduce(x, axis=-1, keepdims=True), out=out)
    elif out is None:
        out = x.copy()
    elif out is not x:
        np.copyto(out, x)
    np.exp(out, out=out)
    out *= (1.0 / row_sum(out))[..., None]
    return out


def softmax_backward(weights: np.ndarray, grad: np.ndarray) -> np.ndarray:
    """The gradient of the softmax scores, given its output `weights` and their gradient: w * (g - sum(g * w))."""
    return weights * (grad - row_sum(grad * weights)[..., None])


def log_softmax(x: np.ndarray) -> np.ndarray:
    """Log-softmax over the last axis, in a fresh array; -inf entries stay -inf."""
    shifted = x - np.maximum.reduce(x, axis=-1, keepdims=True)
    shifted -= np.log(row_sum(np.exp(shifted)))[..., None]
    return shifted


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
    weights = softmax(scores, out=scores)
    return weights @ v, weights


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
#    is below exp_limit (43 in float32), exp(score) lies in [e^-43, e^43]: no overflow, and no
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
def exp_limit(dtype, T: int) -> float:
    """The largest |score| for which exp(score) needs no shift: exp(+-limit) and T times exp(limit)
    are finite, and exp(-limit) >= sqrt(tiny), far from underflow."""
    info = np.finfo(dtype)
    return min(-0.5 * math.log(info.tiny), math.log(info.max) - math.log(T) - 1.0)


def _heads(x: np.ndarray, n_head: int) -> np.ndarray:
    """(B, T, C) -> (B, H, T, D), a view."""
    B, T, C = x.shape
    return x.reshape(B, T, n_head, C // n_head).transpose(0, 2, 1, 3)


def causal_attention_forward(qkv: np.ndarray, n_head: int):
    """Causal multi-head attention of the packed qkv (B, T, 3C) -> (y (B, T, C), q_scaled (B, T, C),
    the weight blocks), the last two kept for causal_attention_backward."""
    B, T, C3 = qkv.shape
    C, H = C3 // 3, n_head
    D = C // H
    q_scaled = qkv[:, :, :C] * (1.0 / math.sqrt(D))  # (B, T, C), contiguous
    k_packed = qkv[:, :, C:2 * C]
    bound, limit = None, exp_limit(qkv.dtype, T)
    if B * H * T * T >= _BOUND_MIN_SCORES:
        # the bound m_i = |q_i / sqrt(D)| max_{j<=i} |k_j| of row i's scores (see 2. above)
        q4, k4 = q_scaled.reshape(B, T, H, D), k_packed.reshape(B, T, H, D)
        q_norm = np.sqrt(np.einsum("bthd,bthd->bth", q4, q4))  # (B, T, H), one pass, no temporary
        k_norm = np.sqrt(np.einsum("bthd,bthd->bth", k4, k4))
        np.maximum.accumulate(k_norm, axis=1, out=k_norm)  # the largest |k_j| so far
        bound = (q_norm * k_norm).transpose(0, 2, 1)  # (B, H, T)
    q, k, v = _heads(q_scaled, H), _heads(k_packed, H), _heads(qkv[:, :, 2 * C:], H)  # (B, H, T, D)
    y = np.empty((B, T, C), dtype=qkv.dtype)
    y_heads = _heads(y, H)
    weights = []
    for t0, t1 in _query_blocks(T):
        # queries t0..t1-1 against keys 0..t1-1: scores, then softmax weights, (B, H, t1 - t0, t1)
        w = np.matmul(q[:, :, t0:t1], k[:, :, :t1].swapaxes(-1, -2))
        # -inf after each query's own position; added over whole rows (zeros before the diagonal
        # square): one contiguous pass costs less than a strided one over the square alone
        w += _causal_bias(t1 - t0, t1, w.dtype)
        large = bound is None or bound[:, :, t0:t1].max() > limit  # scores may be large: the usual shift
        softmax(w, out=w, shift=large)
        np.matmul(w, v[:, :, :t1], out=y_heads[:, :, t0:t1])  # (B, H, t1 - t0, D) into y
        weights.append(w)
    return y, q_scaled, weights


def causal_attention_backward(qkv, q_scaled, weights, y, grad, n_head: int) -> np.ndarray:
    """Gradient of causal_attention_forward: grad (B, T, C) -> grad_qkv (B, T, 3C)."""
    B, T, C = grad.shape
    H = n_head
    D = C // H
    # delta_i = gy_i . y_i, per head: the softmax backward's row term (see 3. above)
    delta = np.einsum("bthd,bthd->bht", grad.reshape(B, T, H, D), y.reshape(B, T, H, D))  # (B, H, T)
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


def whole_square(blocks: list, T: int) -> np.ndarray:
    """causal_attention_forward's weight blocks, (B, H, t1 - t0, t1) each, as one (B, H, T, T)."""
    B, H = blocks[0].shape[:2]
    out = np.zeros((B, H, T, T), dtype=blocks[0].dtype)
    for (t0, t1), w in zip(_query_blocks(T), blocks):
        out[:, :, t0:t1, :t1] = w
    return out
