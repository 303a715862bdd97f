"""Process-level tuning for training and generation loops: the memory allocator, and readings of
the process's memory use.

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

Threads: tinytorch.threads (set_num_threads, num_threads, set_blas_threads, blas_threads).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

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

