"""How many threads tinytorch runs on: the one place that sets both counts.

Two kinds of threads. tinytorch.parallel splits a training step's batch into shards, one per
thread of its own (get_threads; min(2, cores) by default, TINYTORCH_NUM_THREADS at import).
numpy's OpenBLAS splits each big matrix product across its own threads, which spin while they
wait for each other: on a busy machine a descheduled one stalls every product (figures in
benchmarks/README.md). So a training step runs its shards with the BLAS on one thread:

    tinytorch.threads.set_num_threads(2)   # training steps on 2 threads, numpy's BLAS on 1
    tinytorch.threads.set_num_threads(1)   # everything on one core: a shared machine

"""

from __future__ import annotations

import os
from contextlib import contextmanager
from functools import lru_cache

DEFAULT_THREADS = min(2, os.cpu_count() or 1)


def _threads_from_environment() -> int:
    value = os.environ.get("TINYTORCH_NUM_THREADS", "").strip()
    if not value:
        return DEFAULT_THREADS
    try:
        return max(1, int(value))
    except ValueError:
        raise ValueError(f"TINYTORCH_NUM_THREADS must be a whole number of threads (1 turns sharding "
                         f"off), got {value!r}") from None


_threads = _threads_from_environment()


def set_threads(n: int) -> None:
    """How many threads (this one included) a training forward and backward shards its batch over."""
    global _threads
    _threads = max(1, int(n))


def get_threads() -> int:
    return _threads


def set_num_threads(n: int) -> bool:
    """Run tinytorch's training steps on n threads: a training forward splits its batch into up
    to n shards (tinytorch.parallel), and numpy's OpenBLAS goes to one thread, whose own spinning
    threads would compete with them. Returns whether numpy's BLAS could be set (see
    set_blas_threads); tinytorch's own thread count is set either way. Call it at the start of a
    script, not while other threads are inside numpy. The environment variable
    TINYTORCH_NUM_THREADS sets tinytorch's count at import (default min(2, cores))."""
    set_threads(n)
    return set_blas_threads(1)


@contextmanager
def num_threads(n: int):
    """set_num_threads(n) for a `with` block; both thread counts come back after it (so that a
    training run started in-process, as tests start them, leaves the process as it found it)."""
    before, before_blas = get_threads(), blas_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_threads(before)
        if before_blas is not None:
            set_blas_threads(before_blas)


@contextmanager
def blas(n: int):
    """numpy's OpenBLAS on n threads for a `with` block, then back to its count before: for work
    that runs between training steps on one thread of Python (an evaluation), whose matrix
    products may take the cores the step's shards had."""
    before = blas_threads()
    set_blas_threads(n)
    try:
        yield
    finally:
        if before is not None:
            set_blas_threads(before)


# ----------------------------------------------------------------------------- BLAS threads
# Setter and getter names of the OpenBLAS builds numpy ships or links (scipy-openblas is the
# one in numpy's wheels; its symbols carry a prefix and, for 64-bit integers, a suffix).
_OPENBLAS_SYMBOLS = [
    ("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
    ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
    ("openblas_set_num_threads64_", "openblas_get_num_threads64_"),
    ("openblas_set_num_threads", "openblas_get_num_threads"),
]


@lru_cache(maxsize=1)
def _openblas():
    """(set, get) functions of the OpenBLAS that numpy loaded, or None (not Linux, not OpenBLAS).
    Looked up once: numpy loads its BLAS when imported, and this imports numpy first."""
    import ctypes  # here, not at import: most processes never need it

    import numpy  # noqa: F401  (loads the BLAS library, if it is not loaded yet)

    try:
        with open("/proc/self/maps") as f:
            paths = sorted({line.split()[-1] for line in f if "openblas" in line.lower() and ".so" in line})
    except OSError:
        return None
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for setter, getter in _OPENBLAS_SYMBOLS:
            if hasattr(lib, setter) and hasattr(lib, getter):
                set_threads, get_threads = getattr(lib, setter), getattr(lib, getter)
                set_threads.argtypes, set_threads.restype = [ctypes.c_int], None
                get_threads.argtypes, get_threads.restype = [], ctypes.c_int
                return set_threads, get_threads
    return None


def set_blas_threads(n: int) -> bool:
    """Make numpy's OpenBLAS use n threads from now on (also after numpy was imported, unlike the
    OPENBLAS_NUM_THREADS variable). Returns False, doing nothing, where numpy's BLAS is not an
    OpenBLAS this can find (other BLAS libraries: set their own variables before starting).
    Call it at the start of a script, not while other threads are inside numpy."""
    functions = _openblas()
    if functions is None:
        return False
    set_threads, get_threads = functions
    set_threads(max(1, int(n)))
    return get_threads() == max(1, int(n))


def blas_threads() -> int | None:
    """The thread count numpy's OpenBLAS uses now, or None where it cannot be read."""
    functions = _openblas()
    return None if functions is None else functions[1]()
