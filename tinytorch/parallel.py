"""More cores for a training step: the batch split into shards, one per thread.

numpy runs each operation on one core (its BLAS can use more, see tinytorch.memory). A training
step's forward and backward over B sequences is the sum of independent pieces: each shard of
the batch can run its own forward and backward in its own thread, with its own graph, over the
same parameters. numpy releases the GIL inside its loops and BLAS calls, so the shards really run
at the same time; only the Python between numpy calls takes turns. Each shard's backward collects
its gradients apart (tensor.collect_grads), and they are added up at the end in shard order, so
the result does not depend on which thread finished first.

A model opts in from its forward: a GPT, when it trains, asks training_shards() for a plan and
runs its shards as one node of the caller's graph (ShardedForward); `loss.backward()` then runs
their backwards on the same threads. So the plain loop a student writes is as fast as
tinytorch.training.train_step, with no settings. This module knows no layer types and no loss:
the model says how big a row is and whether it draws random numbers.

Threads: tinytorch.threads (min(2, cores) by default; TINYTORCH_NUM_THREADS at import,
tinytorch.threads.set_num_threads(n) at run time). The first training forward on more than one
thread also sets numpy's OpenBLAS to one thread, whose own spinning threads would compete with
the shards, unless OPENBLAS_NUM_THREADS says otherwise. Figures: benchmarks/README.md.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .tensor import Function, collect_grads, is_grad_enabled
from .threads import get_threads, set_blas_threads

# The smallest shard worth a thread, in activations: positions x the model's row width (n_embd
# for a GPT), the size of each (N, C) array its ops work on. Each op of a shard costs a fixed
# overhead in Python, paid by the threads in turns (they share the GIL), plus work in proportion
# to this size, done at the same time (see benchmarks/README.md for where it breaks even).
MIN_SHARD_ACTIVATIONS = 20_000
_pool: ThreadPoolExecutor | None = None
_pool_size, _pool_lock = 0, threading.Lock()
_blas_settled = False


def _helpers(n: int) -> ThreadPoolExecutor:
    """At least n helper threads, started on first use and kept: idle ones sleep. (A smaller pool
    replaced by a bigger one lets its threads go when it is garbage-collected.)"""
    global _pool, _pool_size
    with _pool_lock:
        if _pool_size < n:
            _pool, _pool_size = ThreadPoolExecutor(max_workers=n, thread_name_prefix="tinytorch"), n
        return _pool


def shards(batch: int, row_activations: int, draws_random: bool = False) -> list[slice]:
    """The batch rows each thread takes: as many near-equal shards as there are threads, fewer
    when a shard would be too small to pay for its thread, and one when the forward draws random
    numbers (dropout: their order across threads would change from run to run).

    row_activations: the activations one batch row makes per layer (a GPT's: seq_len * n_embd)."""
    if draws_random:
        return [slice(0, batch)]
    n = max(1, min(get_threads(), batch, batch * row_activations // MIN_SHARD_ACTIVATIONS))
    bounds = [batch * i // n for i in range(n + 1)]
    return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def training_shards(params, batch: int, row_activations: int, draws_random: bool = False) -> list[slice]:
    """shards() for a forward that records a graph (gradients on, some of `params()` trainable);
    one shard otherwise: evaluation and generation stay on the caller's thread. `params` is
    called only when there is more than one shard: listing a model's parameters walks all its
    modules, 0.1 ms a step for a small model on one thread."""
    if get_threads() == 1 or not is_grad_enabled():
        return [slice(0, batch)]
    _settle_blas()
    parts = shards(batch, row_activations, draws_random)  # cheap when one shard: small models pay nothing more
    if len(parts) > 1 and not any(p.requires_grad for p in params()):
        return [slice(0, batch)]
    return parts


def _settle_blas() -> None:
    """Once, at the first training forward on more than one thread: numpy's OpenBLAS to one thread, unless the environment
    chose its count (its threads would spin against the shards' for the same cores)."""
    global _blas_settled
    if not _blas_settled:
        _blas_settled = True
        if not any(os.environ.get(name) for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
            set_blas_threads(1)


def _in_threads(fn, n: int) -> list:
    """[fn(0), ..., fn(n - 1)]: fn(0) on this thread, the others on helpers, in numpy's error
    settings of this thread (numpy's are per thread). Waits for all; re-raises the first error."""
    errstate = np.geterr()

    def run(i):
        with np.errstate(**errstate):
            return fn(i)

    futures = [_helpers(n - 1).submit(run, i) for i in range(1, n)]
    try:
        first = fn(0)
    finally:
        wait(futures)  # even when shard 0 failed: no thread may still be using the model after we return
    return [first] + [future.result() for future in futures]  # result() re-raises a shard's error


class ShardedForward(Function):
    """run(idx) with idx's rows in shards, each shard on its own thread with its own graph; the
    outputs stacked in order. In the caller's graph this is one node whose inputs are the
    parameters: its backward runs each shard's backward on its thread, collecting the shard's
    parameter gradients apart (collect_grads), and returns their sums, added in shard order.

    idx: (B, T) ids, then the model's parameters  parts: batch slices  ->  run's output stacked
    """

    @staticmethod
    def forward(ctx, idx, *param_arrays, run, parts):
        ctx.outs, ctx.parts = _in_threads(lambda i: run(idx[parts[i]]), len(parts)), parts
        return np.concatenate([out.data for out in ctx.outs])

    @staticmethod
    def backward(ctx, grad):
        outs, parts = ctx.outs, ctx.parts
        ctx.outs = None  # each shard's graph is freed by its backward

        def shard(i):
            with collect_grads() as grads:
                outs[i].backward(grad[parts[i]])
            return grads

        collected = _in_threads(shard, len(parts))
        sums = []
        for p in ctx.parents[1:]:  # the parameters, as apply recorded them
            total = None
            for grads in collected:  # in shard order: the same sums every run
                g = grads.get(p)
                if g is not None:
                    total = g if total is None else np.add(total, g, out=total)  # collected arrays are fresh copies
            sums.append(total)
        return (None, *sums)


def sharded_forward(model, run, idx: np.ndarray, parts: list):
    """run(idx) as a ShardedForward over `model`'s parameters."""
    return ShardedForward.apply(idx, *model.parameters(), run=run, parts=parts)
