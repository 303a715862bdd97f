"""Causal multi-head self-attention, GPT-2's, and the KV cache that makes generation cheap."""

from __future__ import annotations

import numpy as np

from ..fused import FusedCausalSelfAttention
from .layers import Dropout, Linear
from .module import Module


class KVCache:
    """Keys and values of the positions seen so far, for every layer, so that generating one more
    token costs one position rather than the whole window.

    Per layer: keys and values of shape (B, H, max_len, D), filled up to `length`.
    """

    def __init__(self, n_layer: int, batch: int, n_head: int, head_dim: int, max_len: int, dtype=np.float32):
        shape = (batch, n_head, max_len, head_dim)
        self.keys = [np.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.values = [np.zeros(shape, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.length = 0  # positions held, the same in every layer once a forward pass completes
        self._layer = 0

    @property
    def batch(self) -> int:
        return self.keys[0].shape[0]

    def layer(self, i: int) -> "KVCache":
        """Point `append` at layer i (the model calls this before each block)."""
        self._layer = i
        return self

    def write(self, layer: int, pos: int, k: np.ndarray, v: np.ndarray):
        """Store k, v (B, H, T, D) of `layer` at positions pos .. pos + T - 1; return that layer's
        keys and values of positions 0 .. pos + T - 1, views (B, H, pos + T, D)."""
        end = pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache holds {self.max_len} positions; {end} requested")
        keys, values = self.keys[layer], self.values[layer]
        keys[:, :, pos:end] = k
        values[:, :, pos:end] = v
        return keys[:, :, :end], values[:, :, :end]

    def append(self, k: np.ndarray, v: np.ndarray):
        """write() after the cached positions of the current layer (the module path)."""
        return self.write(self._layer, self.length, k, v)

    def advance(self, n: int) -> None:
        """Count n more positions as cached (the model calls this after the last layer)."""
        self.length += n

    def reorder(self, rows) -> None:
        """Keep the cached rows `rows` (a list of batch indices, repeats allowed), in that order:
        beam search continues some sequences twice and drops others. Copies the filled
        positions only; the batch may change size."""
        rows = np.asarray(rows, dtype=np.intp)
        n = self.length
        moved = np.flatnonzero(rows != np.arange(len(rows))) if len(rows) == self.batch else None
        if moved is not None and not moved.size:
            return
        for store in (self.keys, self.values):
            for i, old in enumerate(store):
                if moved is not None:  # only the rows that change; the gather copies first: safe in place
                    old[moved, :, :n] = old[rows[moved], :, :n]
                else:
                    new = np.zeros((len(rows),) + old.shape[1:], dtype=old.dtype)
                    new[:, :, :n] = old[rows, :, :n]
                    store[i] = new


class CausalSelfAttention(Module):
    """x (B, T, C) -> (B, T, C). One matmul makes q, k and v for all heads (GPT-2's c_attn); each
    position attends to itself and the positions before it, never after."""

    def __init__(self, n_embd: int, n_head: int, n_layer: int, dropout: float = 0.0):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd ({n_embd}) must be a multiple of n_head ({n_head})")
        self.n_head = n_head
        self.c_attn = Linear(n_embd, 3 * n_embd)
        # GPT-2 scales the init of each residual projection by 1/sqrt(2 * n_layer)
        self.c_proj = Linear(n_embd, n_embd, std=0.02 / np.sqrt(2 * n_layer))
        self.resid_dropout = Dropout(dropout)

    def forward(self, x, cache: KVCache | None = None, attentions: list | None = None, norm=None):
        """attentions: a list that receives the attention weights (B, H, T, T_keys). norm: a
        LayerNorm to apply to x first, fused with c_attn (a Block passes its ln_1)."""
        qkv = self.c_attn(x) if norm is None else self.c_attn.after_norm(norm, x)  # (B, T, 3C)
        y = FusedCausalSelfAttention.apply(qkv, n_head=self.n_head, cache=cache, attentions=attentions)  # (B, T, C)
        return self.resid_dropout(self.c_proj(y))
