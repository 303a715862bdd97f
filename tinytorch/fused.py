"""The hot path of a transformer, fused: one Function each for linear, layer norm, layer norm
followed by a linear, GELU, embedding, dropout, softmax, cross-entropy and causal self-attention,
so that a training step is a few dozen numpy calls with no Python loop over batch, heads or
positions. The kernels these share with generation's cached decoder (linear, normalize, the
LayerNorm fold, gelu, softmax, attention) are in kernels.py; backward passes that only training
needs are written here. Names start with Fused where an nn layer has the plain name (nn.Linear
calls FusedLinear).
"""

from __future__ import annotations

import numpy as np

from .kernels import (GELU_A, GELU_B, attention_forward, causal_attention_backward,
                      causal_attention_forward, column_sum, dropout_mask, exp_limit, fold_layer_norm, gelu_gate,
                      linear, log_softmax, normalize, normalize_backward, one_hot_product, row_blocks, row_sum,
                      softmax, softmax_backward, whole_square)
from .tensor import Function


class FusedLinear(Function):
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
        x2d, weight = ctx.saved_tensors
        needs = ctx.needs_input_grad
        grad2d = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_x = (grad2d @ weight.T).reshape(ctx.x_shape) if needs[0] else None  # (N, in)
        grad_w = x2d.T @ grad2d if needs[1] else None  # (in, N) @ (N, out)
        grad_b = column_sum(grad2d) if len(needs) > 2 and needs[2] else None  # (out,)
        return grad_x, grad_w, grad_b


class FusedLayerNorm(Function):
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
        xhat, rstd, weight = ctx.saved_tensors  # (N, C), (N,), (C,)
        n = xhat.shape[1]
        grad2d = grad.reshape(-1, n)
        gx = grad2d * xhat  # (N, C)
        grad_w = column_sum(gx)
        grad_b = column_sum(grad2d)
        # g = grad * weight reaches xhat (written into gx's buffer); normalize_backward takes it back to x
        grad_x = normalize_backward(np.multiply(grad2d, weight, out=gx), xhat, rstd)
        return grad_x.reshape(grad.shape), grad_w, grad_b


class FusedLayerNormLinear(Function):
    """LayerNorm, then a Linear: linear(layer_norm(x, ln_weight, ln_bias), weight, bias) as one.

    x: (..., C)  ln_weight, ln_bias: (C,)  weight: (C, out)  bias: (out,) or None  ->  (..., out)

    LayerNorm's scale and shift fold into the matmul (kernels.fold_layer_norm), as the cached
    decoder does, so they cost passes over the (C, out) weights, not over the (N, C) activations,
    and only xhat is kept for the backward (not xhat and the LayerNorm's output). The backward
    goes the same way: with P = xhat^T @ grad (C, out),
      d weight    = (xhat * ln_weight + ln_bias)^T @ grad = ln_weight[:, None] * P + outer(ln_bias, d bias)
      d ln_weight = sum over rows of xhat * (grad @ weight^T) = row sums of P * weight
      d ln_bias   = weight @ d bias
      d xhat      = grad @ folded_weight^T, then normalize_backward.
    """

    @staticmethod
    def forward(ctx, x, ln_weight, ln_bias, weight, bias=None, eps=1e-5):
        xhat, rstd = normalize(x.reshape(-1, x.shape[-1]), eps)  # (N, C), (N,) or a float
        rstd = np.asarray(rstd, dtype=x.dtype).reshape(-1)
        folded_w, folded_b = fold_layer_norm(ln_weight, ln_bias, weight, bias)
        y = linear(xhat, folded_w, folded_b)  # (N, out)
        ctx.save_for_backward(xhat, rstd, ln_weight, ln_bias, weight, folded_w)
        ctx.x_shape = x.shape
        return y.reshape(*x.shape[:-1], weight.shape[1])

    @staticmethod
    def backward(ctx, grad):
        xhat, rstd, ln_weight, ln_bias, weight, folded_w = ctx.saved_tensors
        grad2d = grad.reshape(-1, grad.shape[-1])  # (N, out)
        grad_b = column_sum(grad2d)  # (out,)
        P = xhat.T @ grad2d  # (C, N) @ (N, out)
        grad_w = P * ln_weight[:, None]
        grad_w += np.multiply.outer(ln_bias, grad_b)
        grad_ln_w = np.einsum("ij,ij->i", P, weight)  # (C,)
        grad_ln_b = weight @ grad_b
        grad_x = normalize_backward(grad2d @ folded_w.T, xhat, rstd) if ctx.needs_input_grad[0] else None
        return (None if grad_x is None else grad_x.reshape(ctx.x_shape)), grad_ln_w, grad_ln_b, grad_w, grad_b


class FusedGELU(Function):
    """GPT-2's GELU, the tanh approximation: 0.5 x (1 + tanh(u)), u = c (x + 0.044715 x^3).

    That is x * s with s = 0.5 (1 + tanh(u)) = sigmoid(2u) (kernels.gelu_gate), computed in place
    in one buffer, in cache-sized row blocks.
    """

    @staticmethod
    def forward(ctx, x):
        x2d = x.reshape(-1, x.shape[-1]) if x.ndim else x.reshape(1, 1)  # (N, W)
        s, y = np.empty_like(x2d), np.empty_like(x2d)
        for rows in row_blocks(*x2d.shape):  # the chain in cache-sized blocks
            np.multiply(x2d[rows], gelu_gate(x2d[rows], out=s[rows]), out=y[rows])
        ctx.save_for_backward(x2d, s)
        return y.reshape(x.shape)

    @staticmethod
    def backward(ctx, grad):
        x2d, s = ctx.saved_tensors  # (N, W)
        grad2d = grad.reshape(x2d.shape)
        out = np.empty_like(x2d)
        blocks = row_blocks(*x2d.shape)
        scratch = np.empty_like(x2d[blocks[0]])
        for rows in blocks:
            # d/dx [x s(2u)] = s + x s (1 - s) d(2u)/dx = s (1 + (1 - s) x d(2u)/dx),
            # with x d(2u)/dx = x (2c + 6c 0.044715 x^2) = x (-GELU_A - 3 GELU_B x^2)
            x, sb, t = x2d[rows], s[rows], out[rows]
            one_minus_s = np.subtract(1.0, sb, out=scratch[:len(x)])
            np.multiply(x, x, out=t)
            t *= -3.0 * GELU_B
            t -= GELU_A
            t *= x
            t *= one_minus_s
            t += 1.0
            t *= sb
            t *= grad2d[rows]
        return out.reshape(grad.shape)


class FusedEmbedding(Function):
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
        return one_hot_product(ctx.ids, grad.reshape(-1, grad.shape[-1]), ctx.num_rows), None


class FusedDropout(Function):
    @staticmethod
    def forward(ctx, x, p, rng):
        ctx.mask = dropout_mask(x.shape, p, rng, x.dtype)
        return x * ctx.mask

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.mask


class Softmax(Function):
    @staticmethod
    def forward(ctx, x):
        out = softmax(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return softmax_backward(out, grad)


class LogSoftmax(Function):
    @staticmethod
    def forward(ctx, x):
        out = log_softmax(x)
        ctx.save_for_backward(out)
        return out

    @staticmethod
    def backward(ctx, grad):
        (out,) = ctx.saved_tensors
        return grad - np.exp(out) * row_sum(grad)[..., None]


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
        limit = exp_limit(logits.dtype, vocab)
        if logits.size and -limit <= np.minimum.reduce(logits, axis=None) and np.maximum.reduce(logits, axis=None) <= limit:
            # every exp(logit) is finite and far from underflow, sums included (kernels.exp_limit):
            # the usual shift by each row's max changes nothing but rounding here, and its row-wise
            # max costs more than these two whole-array reductions. NaN or inf take the shift.
            shifted = logits
        else:
            shifted = logits - logits.max(axis=-1, keepdims=True)
        probs = np.exp(shifted)
        total = row_sum(probs)
        probs /= total[:, None]
        # -log p(target) = log(sum(exp)) - shifted[target]: finite even where p underflows to 0
        nll = np.log(total) - shifted[rows, safe]
        loss = (nll.sum() if count == len(safe) else np.dot(nll, keep)) / max(count, 1)
        ctx.save_for_backward(probs, rows, safe, keep)
        ctx.count = count
        return np.asarray(loss, dtype=logits.dtype)

    @staticmethod
    def backward(ctx, grad):
        probs, rows, safe, keep = ctx.saved_tensors
        grad_logits = probs  # reused in place: the forward's probabilities are not needed again
        grad_logits[rows, safe] -= 1.0
        if ctx.count == len(safe):  # no ignored rows: one scale for all
            grad_logits *= grad / max(ctx.count, 1)
        else:
            grad_logits *= (keep * (grad / max(ctx.count, 1)))[:, None].astype(probs.dtype)
        return grad_logits.reshape(ctx.logits_shape), None


class FusedCausalSelfAttention(Function):
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
            attentions.append(whole_square(weights, T))
        ctx.save_for_backward(qkv, q_scaled, weights, y)
        ctx.n_head = n_head
        return y

    @staticmethod
    def backward(ctx, grad):
        if ctx.has_cache:
            raise RuntimeError("attention over a KV cache is for generation only; it has no backward")
        return causal_attention_backward(*ctx.saved_tensors, grad, ctx.n_head), None
