"""The autograd engine: each node once, gradients accumulate, graphs are freed, clear errors."""

import gc
import weakref

import numpy as np
import pytest

from tinytorch import Function, Tensor, no_grad


class CountingDouble(Function):
    """2x, counting how often its backward runs."""

    calls = 0

    @staticmethod
    def forward(ctx, a):
        return 2.0 * a

    @staticmethod
    def backward(ctx, grad):
        CountingDouble.calls += 1
        return 2.0 * grad


def test_backward_visits_each_node_once_on_a_graph_with_heavy_reuse():
    # y_{i+1} = f(y_i) + f(y_i) with one f node used twice: 2^40 paths from output to input, 40 nodes
    CountingDouble.calls = 0
    x = Tensor(np.array([1.5]), requires_grad=True)
    y = x
    for _ in range(40):
        z = CountingDouble.apply(y)
        y = z + z
    y.sum().backward()
    assert CountingDouble.calls == 40
    assert x.grad[0] == pytest.approx(4.0 ** 40)


def test_gradients_accumulate_across_uses_and_calls():
    x = Tensor(np.array([2.0, -1.0]), requires_grad=True)
    (x * x + 3.0 * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 3)
    (x * 1.0).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 4)


def test_graph_is_freed_after_backward():
    x = Tensor(np.ones(3), requires_grad=True)
    hidden = x * 2.0
    probe = weakref.ref(hidden)
    out = (hidden * hidden).sum()
    del hidden
    gc.collect()
    assert probe() is not None  # the graph holds it until backward
    out.backward()
    gc.collect()
    assert probe() is None and out._ctx is None


def test_backward_of_non_scalar_needs_explicit_gradient():
    x = Tensor(np.ones((2, 2)), requires_grad=True)
    y = x * 3.0
    with pytest.raises(RuntimeError, match="explicit gradient"):
        y.backward()
    y.backward(np.full((2, 2), 0.5))
    np.testing.assert_allclose(x.grad, 1.5)


def test_no_grad_records_nothing():
    x = Tensor(np.ones(2), requires_grad=True)
    with no_grad():
        y = x * 2.0
    assert not y.requires_grad and y._ctx is None
    assert (x * 2.0).requires_grad


def test_float32_by_default_float64_when_asked():
    assert Tensor([1.0, 2.0]).dtype == np.float32
    assert Tensor(np.zeros(2)).dtype == np.float64
    assert Tensor([1.0], dtype=np.float64).dtype == np.float64
    a = Tensor(np.ones(2, dtype=np.float32))
    assert (a * 2.5 + 1).dtype == np.float32
    assert np.asarray(a).dtype == np.float32 and a.numpy() is a.data
    assert Tensor(np.array([[1, 2]])).dtype.kind == "i"


def test_deep_graph_does_not_overflow_the_stack():
    x = Tensor(np.array([1.0]), requires_grad=True)
    y = x
    for _ in range(20_000):
        y = y + 1.0
    y.backward()
    assert x.grad[0] == 1.0


def test_no_grad_is_per_thread_and_nests():
    import threading

    from tinytorch import is_grad_enabled

    inside, release = threading.Event(), threading.Event()

    def generate_in_another_thread():
        with no_grad():
            inside.set()
            release.wait(5)

    worker = threading.Thread(target=generate_in_another_thread)
    worker.start()
    inside.wait(5)
    x = Tensor(np.ones(2), requires_grad=True)
    assert is_grad_enabled() and (x * 2.0).requires_grad  # the other thread's no_grad is its own
    release.set()
    worker.join()

    block = no_grad()
    with block:
        with block:  # the same block entered twice, as a reused decorator would
            assert not is_grad_enabled()
        assert not is_grad_enabled()
    assert is_grad_enabled()
