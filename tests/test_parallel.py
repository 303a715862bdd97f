"""Gates for tinytorch.parallel: a training step with its batch in shards on several threads
gives the one-thread step's loss and gradients (up to rounding), every run the same."""

import numpy as np
import pytest

from tinytorch import memory, parallel
from tinytorch.nn import functional as F
from tinytorch.optim import AdamW
from tinytorch.tensor import collect_grads
from tinytorch.training import train_step

from conftest import tiny_gpt


@pytest.fixture
def threads(monkeypatch):
    """Three threads, and no minimum work: every batch of 3 or more rows is split in 3."""
    monkeypatch.setattr(parallel, "MIN_SHARD_ACTIVATIONS", 1)
    monkeypatch.setattr(parallel, "_threads", 3)


def serial_loss_and_grads(model, x, y):
    model.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    return loss.item(), {name: p.grad.copy() for name, p in model.named_parameters()}


def sharded_loss_and_grads(model, x, y):
    model.zero_grad()
    loss = parallel.loss_and_backward(model, x, y)
    return loss, {name: p.grad.copy() for name, p in model.named_parameters()}


def test_shards_cover_the_batch_once(threads):
    model = tiny_gpt()
    assert parallel.shards(model, 7, 8) == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert parallel.shards(model, 2, 8) == [slice(0, 1), slice(1, 2)]  # never an empty shard
    assert parallel.shards(model, 1, 8) == [slice(0, 1)]


def test_small_work_stays_on_one_thread(monkeypatch):
    monkeypatch.setattr(parallel, "_threads", 2)
    model = tiny_gpt()  # n_embd 8
    monkeypatch.setattr(parallel, "MIN_SHARD_ACTIVATIONS", 4 * 8 * 8)  # 4 sequences of 8 positions
    assert len(parallel.shards(model, 7, 8)) == 1  # 7 sequences: not two shards of 4
    assert len(parallel.shards(model, 8, 8)) == 2


def test_sharded_loss_and_gradients_equal_the_serial_ones(threads, rng):
    model = tiny_gpt(np.float64)
    data = rng.integers(0, 11, (7, 9))
    x, y = data[:, :-1], data[:, 1:].copy()
    y[0, :5] = -100  # ignored targets, unevenly spread: shards count differently
    y[4, 2] = -100
    serial_loss, serial = serial_loss_and_grads(model, x, y)
    loss, grads = sharded_loss_and_grads(model, x, y)
    assert loss == pytest.approx(serial_loss, rel=1e-13)
    for name, g in grads.items():  # the tied wte gets gradients from two places in every shard
        np.testing.assert_allclose(g, serial[name], rtol=1e-11, atol=1e-15, err_msg=name)
    again_loss, again = sharded_loss_and_grads(model, x, y)
    assert again_loss == loss and all(np.array_equal(again[n], grads[n]) for n in grads)  # bit for bit


def test_train_step_on_threads_follows_the_serial_run(threads, rng, monkeypatch):
    data = rng.integers(0, 11, (6, 9))
    runs = []
    for n in (1, 3):
        monkeypatch.setattr(parallel, "_threads", n)
        model = tiny_gpt(np.float64)
        optimizer = AdamW(model.parameters(), lr=1e-2)
        losses = [train_step(model, optimizer, data[:, :-1], data[:, 1:])[0] for _ in range(5)]
        runs.append((losses, model.state_dict()))
    (serial_losses, serial_state), (losses, state) = runs
    np.testing.assert_allclose(losses, serial_losses, rtol=1e-10)
    for name in state:
        np.testing.assert_allclose(state[name], serial_state[name], rtol=1e-8, atol=1e-12, err_msg=name)


def test_dropout_keeps_the_step_on_one_thread(threads):
    model = tiny_gpt(dropout=0.1)
    assert len(parallel.shards(model, 6, 8)) == 1  # random draws in one order: reproducible
    model.eval()
    assert len(parallel.shards(model, 6, 8)) == 3


def test_an_error_in_a_shard_reaches_the_caller(threads, rng):
    model = tiny_gpt()
    x = rng.integers(0, 11, (6, 8))
    x[5, 0] = 99  # outside the vocabulary: only the last shard, on a helper thread, sees it
    with pytest.raises(IndexError, match="id 99"):
        parallel.loss_and_backward(model, x, x)


def test_collect_grads_keeps_leaf_grads_apart(rng):
    model = tiny_gpt()
    x = rng.integers(0, 11, (2, 8))
    model.zero_grad()
    with collect_grads() as grads:
        F.cross_entropy(model(x), x).backward()
    assert all(p.grad is None for p in model.parameters())
    assert set(grads) == set(model.parameters())


def test_set_num_threads_sets_tinytorch_and_blas_threads():
    before_blas, before = memory.blas_threads(), parallel.get_threads()
    try:
        memory.set_num_threads(2)
        assert parallel.get_threads() == 2
        assert memory.blas_threads() in (1, None)
    finally:
        parallel.set_threads(before)
        if before_blas is not None:
            memory.set_blas_threads(before_blas)


def test_num_threads_restores_both_counts():
    before_blas, before = memory.blas_threads(), parallel.get_threads()
    with memory.num_threads(before + 1):
        assert parallel.get_threads() == before + 1
        assert memory.blas_threads() in (1, None)
    assert parallel.get_threads() == before and memory.blas_threads() == before_blas
