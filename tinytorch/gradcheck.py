"""Check a backward pass against central finite differences, as minitorch's grad_check does."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


def numerical_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """d f(x) / dx by central differences, one element at a time. f: array -> float. x: float64."""
    grad = np.zeros_like(x)
    flat, out = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        original = flat[i]
        flat[i] = original + eps
        plus = f(x)
        flat[i] = original - eps
        minus = f(x)
        flat[i] = original
        out[i] = (plus - minus) / (2 * eps)
    return grad


def gradcheck(fn, *inputs: np.ndarray, seed: int = 0, atol: float = 1e-6, rtol: float = 1e-5) -> None:
    """Assert that autograd's gradients of `fn(*tensors)` match central differences, in float64.

    The output is reduced with fixed random weights, so every output element's gradient counts.
    Raises AssertionError naming the input and the largest mismatch.
    """
    arrays = [np.array(x, dtype=np.float64) for x in inputs]
    tensors = [Tensor(a, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    weights = np.random.default_rng(seed).standard_normal(out.shape)
    (out * Tensor(weights)).sum().backward()
    for i, (a, t) in enumerate(zip(arrays, tensors)):
        def scalar(x, i=i):
            args = [Tensor(x if j == i else arrays[j]) for j in range(len(arrays))]
            return float((fn(*args).data * weights).sum())

        expected = numerical_grad(scalar, a)
        got = np.zeros_like(a) if t.grad is None else t.grad
        if not np.allclose(got, expected, atol=atol, rtol=rtol):
            worst = np.max(np.abs(got - expected))
            raise AssertionError(f"gradient of input {i} differs from finite differences by up to {worst:.3g}")
