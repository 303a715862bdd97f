"""Stateless operations on Tensors, as in torch.nn.functional. Each is one fused Function."""

from __future__ import annotations

import numpy as np

from .. import fused
from ..rng import generator
from ..tensor import Tensor


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight + bias, weight of shape (in, out)."""
    return fused.FusedLinear.apply(x, weight, bias)


def gelu(x: Tensor) -> Tensor:
    """GELU in GPT-2's tanh form ("gelu_new" in transformers)."""
    return fused.FusedGELU.apply(x)


def layer_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    return fused.FusedLayerNorm.apply(x, weight, bias, eps=eps)


def layer_norm_linear(x: Tensor, ln_weight: Tensor, ln_bias: Tensor, weight: Tensor, bias: Tensor | None = None,
                      eps: float = 1e-5) -> Tensor:
    """linear(layer_norm(x, ln_weight, ln_bias, eps), weight, bias) as one fused Function: the same
    numbers up to rounding, with LayerNorm's scale and shift folded into the matmul."""
    return fused.FusedLayerNormLinear.apply(x, ln_weight, ln_bias, weight, bias, eps=eps)


def embedding(ids, weight: Tensor) -> Tensor:
    ids = ids.data if isinstance(ids, Tensor) else np.asarray(ids)
    return fused.FusedEmbedding.apply(weight, ids)


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    return fused.FusedDropout.apply(x, p=p, rng=generator())


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    if axis not in (-1, x.ndim - 1):
        raise ValueError("softmax is implemented over the last axis; permute first")
    return fused.Softmax.apply(x)


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    if axis not in (-1, x.ndim - 1):
        raise ValueError("log_softmax is implemented over the last axis; permute first")
    return fused.LogSoftmax.apply(x)


def cross_entropy(logits: Tensor, targets, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy. logits: (..., V)  targets: (...) ids; `ignore_index` rows count for nothing."""
    targets = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"logits {logits.shape} and targets {targets.shape} disagree: want (..., V) and (...)")
    return fused.CrossEntropy.apply(logits, targets, ignore_index=ignore_index)
