"""Process-level tuning for training and generation loops: the memory allocator and the BLAS
thread count, and readings of the process's memory use.

Allocator. A training step allocates the same few dozen temporaries (activations, gradients)
every time, many of them larger than 128 KB. glibc's malloc hands every block over its "mmap
threshold" straight to the kernel (mmap) and returns it on free (munmap), and trims free memory
at the top of its heap back to the OS. So each step maps fresh pages and page-faults on first
touch: measured here, that was 30-40% of a numpy training step. Raising the two thresholds keeps
the freed blocks in malloc's heap, where the next step finds them already mapped. Memory stays
bounded: a step frees what the previous step freed, so the heap settles at about one step's
working set.

The first backward() of a process does this by itself (tune_malloc_on_first_use); to keep
glibc's defaults, set TINYTORCH_TUNE_MALLOC=0. By hand, with other thresholds:

    import tinytorch.memory
    tinytorch.memory.tune_malloc()   # once, where training (or a benchmark) starts

The same can be had without code, by setting environment variables before Python starts:
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=268435456 python -m pretrain ...

Threads. OpenBLAS splits every matrix product above a small size across all cores, and its
threads spin while they wait for each other. On a busy machine (a pretraining run in the
background, two demo sessions) a thread that the OS does not schedule stalls every product:
measured on a 2-core machine with a pretraining run alongside, a copilot training step took 10x
longer with 2 BLAS threads than with 1, and generation 20x. So tinytorch splits a training
step's batch into shards that run in threads of its own (tinytorch.parallel; min(2, cores) by
default), with numpy's BLAS on one thread in each (set at the first training forward unless
OPENBLAS_NUM_THREADS says otherwise):

    tinytorch.memory.set_num_threads(2)   # training steps on 2 threads, numpy's BLAS on 1
    tinytorch.memory.set_num_threads(1)   # everything on one core: a shared machine
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from contextlib import contextmanager
from functools import lru_cache

# mallopt parameter numbers, from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3

# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2: 32 MiB on 64-bit systems.
DEFAULT_MMAP_THRESHOLD = 32 * 1024 * 1024
DEFAULT_TRIM_THRESHOLD = 256 * 1024 * 1024

_tuned: dict | None = None


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.gnu_get_libc_version  # only glibc has it (musl, e.g. Alpine, does not)
        libc.mallopt
    except (OSError, AttributeError):
        return None
    libc.mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    libc.mallopt.restype = ctypes.c_int
    return libc


def tune_malloc(mmap_threshold: int = DEFAULT_MMAP_THRESHOLD,
                trim_threshold: int = DEFAULT_TRIM_THRESHOLD) -> bool:
    """Keep freed arrays in malloc's heap instead of returning them to the OS after every step.

    Sets glibc's M_MMAP_THRESHOLD (blocks at least this big get their own mmap) and
    M_TRIM_THRESHOLD (free memory at the heap top above this goes back to the OS). Call it once,
    before training; calling again is harmless. Returns True when the settings took effect, False
    off Linux/glibc (macOS, Windows, musl), where it does nothing: those allocators differ and the
    defaults stand. Affects the whole process (every library's allocations), never correctness.
    """
    global _tuned
    libc = _libc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)))
    ok = bool(libc.mallopt(_M_TRIM_THRESHOLD, int(trim_threshold))) and ok
    if ok:
        _tuned = {"mmap_threshold": int(mmap_threshold), "trim_threshold": int(trim_threshold)}
    return ok


_first_use_done = False


def tune_malloc_on_first_use() -> None:
    """tune_malloc() with its defaults, once per process, unless it was called already or the
    environment says TINYTORCH_TUNE_MALLOC=0. Tensor.backward calls this: training is where the
    temporaries come back every step, so the plain training loop is fast with no settings."""
    global _first_use_done
    if _first_use_done:
        return
    _first_use_done = True
    import os

    if _tuned is None and os.environ.get("TINYTORCH_TUNE_MALLOC", "1").strip().lower() not in ("0", "false", "no", "off"):
        tune_malloc()


def release_free_memory() -> bool:
    """Hand malloc's free memory back to the OS now (glibc's malloc_trim), e.g. after a server
    dropped a departed user's model: with tune_malloc's thresholds it would otherwise stay in
    the heap, counted in the process's RSS. Returns False where there is no glibc."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim.argtypes = [ctypes.c_size_t]
    return bool(libc.malloc_trim(0))


def malloc_settings() -> dict | None:
    """The thresholds tune_malloc set in this process, or None if it has not (or could not)."""
    return _tuned


def rss_bytes() -> int:
    """Resident set size of this process now, in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return 0
    import os

    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """The largest resident set size this process has had, in bytes (0 where unknown)."""
    try:
        import resource
    except ImportError:  # Windows
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # macOS reports bytes, Linux KiB


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


def set_num_threads(n: int) -> bool:
    """Run tinytorch's training steps on n threads: train_step splits its batch into up to n
    shards (tinytorch.parallel), and numpy's OpenBLAS goes to one thread, whose own spinning
    threads would compete with them. Returns whether numpy's BLAS could be set (see
    set_blas_threads); tinytorch's own thread count is set either way. Call it at the start of a
    script, not while other threads are inside numpy. The environment variable
    TINYTORCH_NUM_THREADS sets tinytorch's count at import (default min(2, cores))."""
    from . import parallel

    parallel.set_threads(n)
    return set_blas_threads(1)


@contextmanager
def num_threads(n: int):
    """set_num_threads(n) for a `with` block; both thread counts come back after it (so that a
    training run started in-process, as tests start them, leaves the process as it found it)."""
    from . import parallel

    before, before_blas = parallel.get_threads(), blas_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        parallel.set_threads(before)
        if before_blas is not None:
            set_blas_threads(before_blas)


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
