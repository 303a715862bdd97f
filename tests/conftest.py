"""Test-wide settings. Environment first: gradio and huggingface_hub read these at import time."""

import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

import tinytorch  # noqa: E402
from tinytorch.nn import GPT, GPTConfig  # noqa: E402


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def tiny_gpt(dtype=np.float32, seed=0, **overrides) -> GPT:
    """A GPT small enough for finite differences: vocab 11, 2 layers, 2 heads of 4, context 8."""
    tinytorch.manual_seed(seed)
    values = dict(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2)
    values.update(overrides)
    return GPT(GPTConfig(**values)).to(dtype)


def textbook_attention(q, k, v, causal: bool = True):
    """softmax(q k^T / sqrt(D) + mask) v from Tensor primitives and F.softmax: the reference the
    fused attention is checked against. q, k, v: Tensors (..., T, D) -> (..., T, D)."""
    from tinytorch.nn import functional as F

    T, D = q.shape[-2], q.shape[-1]
    scores = (q @ k.transpose(-1, -2)) * (1.0 / np.sqrt(D))  # (..., T, T)
    if causal:  # -inf after the diagonal: softmax gives those keys weight 0, and them no gradient
        scores = scores + np.where(np.triu(np.ones((T, T), bool), 1), -np.inf, 0.0)
    return F.softmax(scores) @ v
