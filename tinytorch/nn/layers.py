"""The basic layers. Each owns its parameters and calls one fused function in forward."""

from __future__ import annotations

import numpy as np

from ..rng import generator
from . import functional as F
from .module import Module, Parameter


def _normal(shape, std: float) -> np.ndarray:
    return (generator().standard_normal(shape) * std).astype(np.float32)


class Linear(Module):
    """y = x @ weight + bias.

    weight has shape (in_features, out_features): the layout GPT-2 stores (its "Conv1D"), so that
    checkpoints load with no transposes. (torch.nn.Linear stores the transpose, (out, in).)
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, std: float = 0.02):
        super().__init__()
        self.weight = Parameter(_normal((in_features, out_features), std))
        self.bias = Parameter(np.zeros(out_features, dtype=np.float32)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def after_norm(self, norm: "LayerNorm", x):
        """self(norm(x)) as one fused op (F.layer_norm_linear): the same numbers up to rounding."""
        return F.layer_norm_linear(x, norm.weight, norm.bias, self.weight, self.bias, norm.eps)


class Embedding(Module):
    """A table of vectors, one row per id. forward(ids (...)) -> (..., embedding_dim)."""

    def __init__(self, num_embeddings: int, embedding_dim: int, std: float = 0.02):
        super().__init__()
        self.weight = Parameter(_normal((num_embeddings, embedding_dim), std))

    def forward(self, ids):
        return F.embedding(ids, self.weight)


class LayerNorm(Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = Parameter(np.ones(dim, dtype=np.float32))
        self.bias = Parameter(np.zeros(dim, dtype=np.float32))

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, self.eps)


class Dropout(Module):
    def __init__(self, p: float = 0.1):
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p

    def forward(self, x):
        return F.dropout(x, self.p, self.training)


class GELU(Module):
    def forward(self, x):
        return F.gelu(x)
