"""Gates for tinytorch.parallel: a training step with its batch in shards on several threads
gives the one-thread step's loss and gradients (up to rounding), every run the same."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tinytorch import memory, parallel
from tinytorch import threads as thread_counts
from tinytorch.nn import functional as F
from tinytorch.optim import AdamW
from tinytorch.tensor import collect_grads
from tinytorch.training import loss_and_backward, train_step

from conftest import tiny_gpt


@pytest.fixture
def threads(monkeypatch):
    """Three threads, and no minimum work: every batch of 3 or more rows is split in 3."""
    monkeypatch.setattr(parallel, "MIN_SHARD_ACTIVATIONS", 1)
    monkeypatch.setattr(thread_counts, "_threads", 3)


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SETTINGS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TINYTORCH_NUM_THREADS",
            "TINYTORCH_TUNE_MALLOC")


def fresh_process(script: str, **env) -> subprocess.CompletedProcess:
    """`python -c script` at the repo root in a new interpreter, with no thread or malloc
    settings in its environment but `env`."""
    base = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    return subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**base, **env}, capture_output=True,
                          text=True, timeout=120)


def serial_loss_and_grads(model, x, y):
    before = thread_counts.get_threads()
    thread_counts.set_threads(1)
    try:
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
    finally:
        thread_counts.set_threads(before)
    return loss.item(), {name: p.grad.copy() for name, p in model.named_parameters()}


def sharded_loss_and_grads(model, x, y):
    model.zero_grad()
    loss = loss_and_backward(model, x, y)
    return loss, {name: p.grad.copy() for name, p in model.named_parameters()}


def test_shards_cover_the_batch_once(threads):
    model = tiny_gpt()
    width = 8 * model.config.n_embd  # activations of one row of 8 positions
    assert parallel.shards(7, width) == [slice(0, 2), slice(2, 4), slice(4, 7)]
    assert parallel.shards(2, width) == [slice(0, 1), slice(1, 2)]  # never an empty shard
    assert parallel.shards(1, width) == [slice(0, 1)]


def test_small_work_stays_on_one_thread(monkeypatch):
    monkeypatch.setattr(thread_counts, "_threads", 2)
    monkeypatch.setattr(parallel, "MIN_SHARD_ACTIVATIONS", 4 * 8 * 8)  # 4 sequences of 8 positions, n_embd 8
    assert len(parallel.shards(7, 8 * 8)) == 1  # 7 sequences: not two shards of 4
    assert len(parallel.shards(8, 8 * 8)) == 2


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
        monkeypatch.setattr(thread_counts, "_threads", n)
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
    x = np.arange(48).reshape(6, 8) % 11
    assert not isinstance(model(x)._ctx, parallel.ShardedForward)  # random draws in one order: reproducible
    model.eval()
    assert isinstance(model(x)._ctx, parallel.ShardedForward)


def test_an_error_in_a_shard_reaches_the_caller(threads, rng):
    model = tiny_gpt()
    x = rng.integers(0, 11, (6, 8))
    x[5, 0] = 99  # outside the vocabulary: only the last shard, on a helper thread, sees it
    with pytest.raises(IndexError, match="id 99"):
        loss_and_backward(model, x, x)


def test_collect_grads_keeps_leaf_grads_apart(rng):
    model = tiny_gpt()
    x = rng.integers(0, 11, (2, 8))
    model.zero_grad()
    with collect_grads() as grads:
        F.cross_entropy(model(x), x).backward()
    assert all(p.grad is None for p in model.parameters())
    assert set(grads) == set(model.parameters())


def test_set_num_threads_sets_tinytorch_and_blas_threads():
    before_blas, before = thread_counts.blas_threads(), thread_counts.get_threads()
    try:
        thread_counts.set_num_threads(2)
        assert thread_counts.get_threads() == 2
        assert thread_counts.blas_threads() in (1, None)
    finally:
        thread_counts.set_threads(before)
        if before_blas is not None:
            thread_counts.set_blas_threads(before_blas)


def test_num_threads_restores_both_counts():
    before_blas, before = thread_counts.blas_threads(), thread_counts.get_threads()
    with thread_counts.num_threads(before + 1):
        assert thread_counts.get_threads() == before + 1
        assert thread_counts.blas_threads() in (1, None)
    assert thread_counts.get_threads() == before and thread_counts.blas_threads() == before_blas


def test_the_plain_loop_shards_by_itself_and_gives_the_serial_gradients(threads, rng):
    model = tiny_gpt(np.float64)
    data = rng.integers(0, 11, (7, 9))
    x, y = data[:, :-1], data[:, 1:]
    serial_loss, serial = serial_loss_and_grads(model, x, y)
    model.zero_grad()
    logits = model(x)
    assert isinstance(logits._ctx, parallel.ShardedForward) and logits.shape == (7, 8, 11)
    loss = F.cross_entropy(logits.reshape(-1, 11), y.reshape(-1))  # the README's tour loop
    loss.backward()
    assert loss.item() == pytest.approx(serial_loss, rel=1e-13)
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, serial[name], rtol=1e-11, atol=1e-15, err_msg=name)


def test_evaluation_and_generation_stay_on_the_callers_thread(threads, rng):
    from tinytorch.tensor import no_grad

    model = tiny_gpt()
    x = rng.integers(0, 11, (6, 8))
    with no_grad():
        assert model(x)._ctx is None  # nothing recorded, nothing sharded
    for p in model.parameters():
        p.requires_grad = False
    assert model(x)._ctx is None


def test_defaults_threads_malloc_and_blas_at_first_use(tmp_path):
    """A fresh process with no settings: min(2, cores) threads; the first backward tunes malloc;
    the first sharded step puts numpy's OpenBLAS on one thread. TINYTORCH_TUNE_MALLOC=0 and
    TINYTORCH_NUM_THREADS=1 turn them off."""
    script = (
        "import json, os, numpy as np\n"
        "from tinytorch import memory, parallel, threads\n"
        "from tinytorch.nn import GPT, GPTConfig, functional as F\n"
        "parallel.MIN_SHARD_ACTIVATIONS = 1\n"
        "out = {'threads': threads.get_threads(), 'malloc_before': memory.malloc_settings()}\n"
        "model = GPT(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=1, n_head=2))\n"
        "x = np.arange(32).reshape(4, 8) % 11\n"
        "F.cross_entropy(model(x).reshape(-1, 11), x.reshape(-1)).backward()\n"
        "out['malloc_after'] = memory.malloc_settings()\n"
        "out['blas'] = threads.blas_threads()\n"
        "print(json.dumps(out))\n"
    )
    def run(**env):
        done = fresh_process(script, **env)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    default = run()
    assert default["threads"] == min(2, os.cpu_count() or 1)
    assert default["malloc_before"] is None
    assert default["malloc_after"] == {"mmap_threshold": memory.DEFAULT_MMAP_THRESHOLD,
                                       "trim_threshold": memory.DEFAULT_TRIM_THRESHOLD}
    if default["threads"] > 1 and default["blas"] is not None:
        assert default["blas"] == 1
    off = run(TINYTORCH_TUNE_MALLOC="0", TINYTORCH_NUM_THREADS="1")
    assert off["threads"] == 1 and off["malloc_after"] is None
    bad = fresh_process("import tinytorch.parallel", TINYTORCH_NUM_THREADS="two")
    assert bad.returncode != 0
    assert "TINYTORCH_NUM_THREADS must be a whole number of threads (1 turns sharding off), got 'two'" in bad.stderr


def test_benchmark_harness_thread_settings_hold_after_numpy_is_loaded():
    """benchmarks/harness.py loads numpy when imported, so OPENBLAS_NUM_THREADS set afterwards is
    never read: setup_threads must set OpenBLAS's and tinytorch's counts at run time too (a
    `--threads 1` benchmark otherwise multiplies on OpenBLAS's default threads)."""
    script = (
        "import json, sys\n"
        "sys.path.insert(0, 'benchmarks')\n"
        "import harness\n"
        "from tinytorch import threads\n"
        "loaded = 'numpy' in sys.modules\n"
        "before = threads.blas_threads()\n"
        "harness.setup_threads(1, 'tinytorch')\n"
        "one = [threads.blas_threads(), threads.get_threads()]\n"
        "harness.setup_threads(2, 'blas')\n"
        "print(json.dumps({'loaded': loaded, 'before': before, 'one': one,\n"
        "                  'blas': [threads.blas_threads(), threads.get_threads()]}))\n"
    )
    done = fresh_process(script)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["loaded"]  # the situation this guards against
    if out["before"] is None:
        pytest.skip("numpy's BLAS is not an OpenBLAS that tinytorch.threads can set")
    assert out["one"] == [1, 1]
    assert out["blas"] == [2, 1]
