"""What the benchmark scripts share: thread settings, the model shapes, a description of the
machine, and interleaved timing.

Import this first, before numpy: `setup_threads` sets the BLAS thread count through environment
variables, which OpenBLAS reads once, when numpy loads it.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# name: (n_embd, n_layer, n_head, context); copilot's n_embd is a parameter (--copilot-embd)
SHAPES = {
    "level1": (16, 1, 2, 8),
    "copilot-tiny": (32, 2, 2, 64),
    "copilot": (None, 4, 4, 128),
    "larger": (64, 4, 4, 128),
}
VOCAB = 98  # the Copilot tokenizer's size: printable ASCII and a few specials
# Issue 6's targets for the training step, tinytorch time / PyTorch time: (shape, batch) -> ratio
STEP_TARGETS = {("level1", 16): 0.5, ("copilot-tiny", 16): 1.0, ("copilot-tiny", 64): 1.0,
                ("copilot", 16): 1.0, ("copilot", 64): 1.0, ("larger", 16): 1.2}


def add_common_args(parser, default_threads: int | None = None) -> None:
    parser.add_argument("--threads", type=int, default=default_threads or min(2, os.cpu_count() or 1),
                        help="threads for each framework (default: min(2, cores))")
    parser.add_argument("--threading", choices=["tinytorch", "blas"], default="tinytorch",
                        help="how tinytorch uses them: 'tinytorch' (default) splits its own ops across "
                             "them with numpy's BLAS on 1 thread (tinytorch.memory.set_num_threads); "
                             "'blas' leaves them to numpy's BLAS and runs tinytorch's ops on one")
    parser.add_argument("--copilot-embd", type=int, nargs="*", default=[64, 128],
                        help="n_embd of the 'copilot' shape, one row each (default: 64 128)")
    parser.add_argument("--gap", type=float, default=None,
                        help="seconds of rest before each timed run, so that one framework's spinning "
                             "worker threads do not slow the other (default: 0.25 with >1 thread, else 0)")
    parser.add_argument("--no-tune-malloc", action="store_true",
                        help="leave glibc's allocator at its defaults (see tinytorch.memory)")


def setup_threads(threads: int, threading: str = "tinytorch") -> None:
    """Set numpy's BLAS threads (environment variables, read when numpy loads it) and tinytorch's
    (TINYTORCH_NUM_THREADS, read when tinytorch.functions loads): see --threading."""
    blas, own = (1, threads) if threading == "tinytorch" else (threads, 1)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(blas)
    os.environ["TINYTORCH_NUM_THREADS"] = str(own)
    if "numpy" in sys.modules or "tinytorch" in sys.modules:
        print("# warning: numpy or tinytorch was imported before the thread counts were set", file=sys.stderr)


def torch_or_none(threads: int):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def shapes(names, copilot_embd):
    """[(label, shape name, GPTConfig)] for the named shapes, one copilot row per n_embd."""
    from tinytorch.nn import GPTConfig

    out = []
    for name in names:
        n_embd, n_layer, n_head, ctx = SHAPES[name]
        for embd in (copilot_embd if n_embd is None else [n_embd]):
            label = f"{name}-{embd}" if n_embd is None else name
            out.append((label, name, GPTConfig(vocab_size=VOCAB, n_positions=ctx, n_embd=embd,
                                               n_layer=n_layer, n_head=n_head)))
    return out


def describe(config) -> str:
    return f"C{config.n_embd} L{config.n_layer} H{config.n_head} T{config.n_positions}"


def tune_malloc(disabled: bool) -> str:
    if disabled:
        return "malloc: glibc defaults"
    from tinytorch.memory import malloc_settings, tune_malloc as tune

    if not tune():
        return "malloc: defaults (not glibc)"
    s = malloc_settings()
    return f"malloc: tinytorch.memory.tune_malloc() (mmap {s['mmap_threshold'] >> 20} MiB, " \
           f"trim {s['trim_threshold'] >> 20} MiB)"


def machine(threads: int, torch=None, malloc: str = "") -> str:
    """One comment line: CPU, cores, load, Python, numpy + BLAS, threads, PyTorch, malloc."""
    import numpy as np

    from tinytorch import functions

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas['version']}"
    except Exception:  # the layout of numpy's build info changes between versions
        blas = "BLAS ?"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    torch_part = (f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
                  else "PyTorch not installed: tinytorch columns only")
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    return (f"# {cpu}, {os.cpu_count()} cores, load avg {load}; Python {platform.python_version()}, "
            f"numpy {np.__version__} ({blas}); tinytorch {getattr(functions, 'get_threads', lambda: 1)()} threads + numpy BLAS "
            f"{blas_threads}; {torch_part}; {malloc}")


def interleaved(fns: dict, repeats: int, warmup: int = 2, gap: float = 0.0) -> dict:
    """Run each function `repeats` times, taking turns, and return name -> list of seconds.

    Taking turns means a burst of load from other processes hits every contender alike, so the
    ratio of medians measured in one run is fair even on a busy machine. With `gap`, each timed
    run follows `gap` seconds of sleep and one untimed run of the same function: with more than
    one thread, OpenBLAS's and PyTorch's (OpenMP) worker threads keep spinning for a while after
    their last task and slow down whatever runs next (measured here: a PyTorch op right after
    numpy's 2-thread matmuls took 2.5-4x its time; 0.2 s later, 1x), and the untimed run puts
    the function back in the steady state of a training loop (warm caches, its own threads).
    """
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            if gap:
                time.sleep(gap)
                fn()
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times


def gap(args) -> float:
    return args.gap if args.gap is not None else (0.25 if args.threads > 1 else 0.0)


def median(values) -> float:
    return statistics.median(values)
