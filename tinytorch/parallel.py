"""More cores for a training step: the batch split into shards, one per thread.

numpy runs each operation on one core (its BLAS can use more, see tinytorch.memory). A training
step's forward and backward over B sequences is the sum of independent pieces: each shard of
the batch can run its own forward and backward in its own thread, with its own graph, over the
same parameters. numpy releases the GIL inside its loops and BLAS calls, so the shards really run
at the same time; only the Python between numpy calls takes turns. Each shard's backward collects
its gradients apart (tensor.collect_grads), and they are added up at the end in shard order, so
the result does not depend on which thread finished first.

Measured on a 2-core machine, forward and backward of the copilot (C96 L4 T128) at batch 16:
125 ms on one thread, 72 ms in two shards (1.74x). Splitting every fused op into row chunks
instead, the way BLAS does, gave 1.3x: a step has hundreds of ops, each paid a hand-over, and
the small ones (attention's per-block work) got slower.

    import tinytorch.memory
    tinytorch.memory.set_num_threads(2)   # train_step shards its batch over 2 threads

Off by default (1 thread): on a machine shared with other work, or serving several demo
sessions, one core each is the better plan. TINYTORCH_NUM_THREADS sets it at import.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .nn import functional as F
from .nn.layers import Dropout
from .tensor import accumulate_grad, collect_grads

_threads = max(1, int(os.environ.get("TINYTORCH_NUM_THREADS", "1")))
# The smallest shard worth a thread, in activations: positions x n_embd, the size of each (N, C)
# array its ops work on. Each op of a shard costs a fixed overhead in Python, paid by the two
# threads in turns (they share the GIL), plus work in proportion to this size, done at the same
# time. Measured on 2 cores, sharding broke even at ~16,000 for n_embd 32, 64 and 96 alike (and
# lost below it: 3x slower for level1 at batch 16); at 33,000 it was 1.2-1.4x faster.
MIN_SHARD_ACTIVATIONS = 20_000
_pool: ThreadPoolExecutor | None = None
_pool_size, _pool_lock = 0, threading.Lock()


def set_threads(n: int) -> None:
    """How many threads (this one included) train_step shards its batch over."""
    global _threads
    _threads = max(1, int(n))


def get_threads() -> int:
    return _threads


def _helpers(n: int) -> ThreadPoolExecutor:
    """At least n helper threads, started on first use and kept: idle ones sleep. (A smaller pool
    replaced by a bigger one lets its threads go when it is garbage-collected.)"""
    global _pool, _pool_size
    with _pool_lock:
        if _pool_size < n:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tinytorch"), n
        return _pool


def shards(model, batch: int, seq_len: int) -> list[slice]:
    """The batch rows each thread takes: as many near-equal shards as there are threads, fewer
    when a shard would be too small to pay for its thread, and one while dropout is drawing
    random numbers (their order across threads would change from run to run)."""
    width = getattr(getattr(model, "config", None), "n_embd", 0)  # a GPT's; other models stay whole
    n = max(1, min(_threads, batch, batch * seq_len * width // MIN_SHARD_ACTIVATIONS))
    if n > 1 and model.training and any(isinstance(m, Dropout) and m.p > 0 for m in model.modules()):
        n = 1
    bounds = [batch * i // n for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def loss_and_backward(model, x: np.ndarray, y: np.ndarray, ignore_index: int = -100) -> float:
    """The mean cross-entropy of model(x) against targets y, (B, T) each, with its gradient
    added to every parameter's .grad, as `loss = F.cross_entropy(model(x), y); loss.backward()`
    does, but with the batch in shards on get_threads() threads. Returns the loss, a float.

    The full batch's mean is each shard's mean weighted by its share of the counted targets, so
    each shard's backward starts from that weight instead of 1. Results equal the serial ones up
    to rounding; an error in any shard is raised here.
    """
    parts = shards(model, x.shape[0], x.shape[1])
    if len(parts) == 1:
        loss = F.cross_entropy(model(x), y, ignore_index=ignore_index)
        loss.backward()
        return loss.item()
    counted = [int(np.count_nonzero(y[part] != ignore_index)) for part in parts]
    total = max(sum(counted), 1)
    errstate = np.geterr()  # the caller's, for the helper threads (numpy's is per thread)

    def shard(i: int):
        with np.errstate(**errstate), collect_grads() as grads:
            loss = F.cross_entropy(model(x[parts[i]]), y[parts[i]], ignore_index=ignore_index)
            weight = counted[i] / total
            loss.backward(np.asarray(weight, dtype=loss.dtype))
            return loss.item() * weight, grads

    pool = _helpers(len(parts) - 1)
    futures = [pool.submit(shard, i) for i in range(1, len(parts))]
    try:
        first = shard(0)
    finally:
        wait(futures)  # even when shard 0 failed: no thread may still be using the model after we return
    results = [first] + [future.result() for future in futures]  # result() re-raises a shard's error
    for _, grads in results:  # in shard order: the same sums every run
        for leaf, grad in grads.items():
            accumulate_grad(leaf, grad)
    return sum(loss for loss, _ in results)
