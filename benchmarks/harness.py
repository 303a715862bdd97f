"""What the benchmark scripts share: thread settings, the model shapes, a description of the
machine, and interleaved timing.

Import this first, and call `start` before importing numpy: it sets the BLAS thread count through
environment variables, which OpenBLAS reads once, when numpy loads it.
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

# name: (n_embd, n_layer, n_head, context). The shipped models' shapes come from their pretraining
# presets; the copilot's n_embd can be varied (--copilot-embd), and "larger" is issue 6's big shape.
def _preset_shape(name):
    from pretrain.config import PRESETS

    p = PRESETS[name]
    return p.n_embd, p.n_layer, p.n_head, p.n_positions


SHAPES = {name: _preset_shape(name) for name in ("level1", "copilot-tiny", "copilot")}
SHAPES["larger"] = (64, 4, 4, 128)
COPILOT_EMBD = SHAPES["copilot"][0]  # the shipped default, 96
VOCAB = 98  # the Copilot tokenizer's size: printable ASCII and a few specials


def add_common_args(parser, default_threads: int | None = None) -> None:
    parser.add_argument("--threads", type=int, default=default_threads or min(2, os.cpu_count() or 1),
                        help="threads for each framework (default: min(2, cores))")
    parser.add_argument("--threading", choices=["tinytorch", "blas", "default"], default="tinytorch",
                        help="how tinytorch uses them: 'tinytorch' (default) splits a training step's "
                             "batch over them with numpy's BLAS on 1 thread (tinytorch.threads.set_num_threads); "
                             "'blas' leaves them to numpy's BLAS and runs each step in one piece; "
                             "'default' sets nothing: tinytorch's own defaults, as a student's script gets them")
    parser.add_argument("--copilot-embd", type=int, nargs="*", default=[COPILOT_EMBD],
                        help=f"n_embd of the 'copilot' shape, one row each (default: {COPILOT_EMBD}, "
                             "the shipped model's)")
    parser.add_argument("--no-tune-malloc", action="store_true",
                        help="leave glibc's allocator at its defaults (see tinytorch.memory)")


def setup_threads(threads: int, threading: str = "tinytorch") -> None:
    """Set numpy's BLAS threads (environment variables, read when numpy loads it) and tinytorch's
    (TINYTORCH_NUM_THREADS, read when tinytorch.parallel loads): see --threading."""
    if threading == "default":  # nothing set: what `import tinytorch` alone gives
        return
    blas, own = (1, threads) if threading == "tinytorch" else (threads, 1)
    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(blas)
    os.environ["TINYTORCH_NUM_THREADS"] = str(own)
    if "numpy" in sys.modules or "tinytorch" in sys.modules:
        # Importing this module loads numpy (SHAPES reads the pretraining presets), after which
        # OpenBLAS no longer reads its variable: set both counts at run time too, or a
        # "--threads 1" run would multiply on OpenBLAS's default threads.
        from tinytorch.threads import set_blas_threads, set_threads

        set_threads(own)
        if not set_blas_threads(blas):
            print("# warning: numpy's BLAS thread count could not be set; it may not be", blas, file=sys.stderr)


def start(args, compare_torch: bool = True, malloc: str = "") -> object:
    """What every benchmark does first, in this order: thread settings (before numpy loads),
    PyTorch if it is compared and installed, glibc's allocator (unless `malloc` already says how it
    is set), and the machine line. Returns the torch module or None."""
    setup_threads(args.threads, getattr(args, "threading", "tinytorch"))
    if args.no_tune_malloc:
        os.environ["TINYTORCH_TUNE_MALLOC"] = "0"  # nor at the first backward (tinytorch.memory)
    compare_torch = compare_torch and not getattr(args, "no_torch", False)
    torch = torch_or_none(args.threads) if compare_torch else None
    if not malloc and getattr(args, "threading", "") == "default" and not args.no_tune_malloc:
        malloc = "malloc: tinytorch's default (tuned at the first backward)"
    print(machine(args.threads, torch, malloc or tune_malloc(args.no_tune_malloc), compare_torch))
    return torch


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
        for embd in (copilot_embd if name == "copilot" else [n_embd]):
            label = name if name != "copilot" or embd == COPILOT_EMBD else f"{name}-{embd}"
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


def cpu_name() -> str:
    """The CPU's model name, as lscpu shows it (every timing table quotes it)."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def machine(threads: int, torch=None, malloc: str = "", compare_torch: bool = True) -> str:
    """One comment line: CPU, cores, load, Python, numpy + BLAS, threads, PyTorch, malloc."""
    import numpy as np

    try:
        from tinytorch.parallel import get_threads
    except ImportError:  # an older tinytorch, measured for comparison: no threads of its own
        get_threads = lambda: 1  # noqa: E731

    cpu = cpu_name()
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        blas = f"{blas['name']} {blas['version']}"
    except Exception:  # the layout of numpy's build info changes between versions
        blas = "BLAS ?"
    load = " ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    torch_part = (f"torch {torch.__version__} ({torch.get_num_threads()} threads)" if torch
                  else "PyTorch not installed: tinytorch columns only" if compare_torch else "tinytorch only")
    blas_threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    return (f"# {cpu}, {os.cpu_count()} cores, load avg {load}; Python {platform.python_version()}, "
            f"numpy {np.__version__} ({blas}); tinytorch {get_threads()} threads + numpy BLAS "
            f"{blas_threads}; {torch_part}; {malloc}")


def interleaved(fns: dict, repeats: int, burst: int = 5, settle: int = 2) -> dict:
    """Time each function `repeats` times, the functions taking turns in bursts, and return
    name -> list of seconds.

    Taking turns means a burst of load from other processes hits every contender alike, so the
    ratio of medians measured in one run is fair even on a busy machine. Each turn first runs
    the function `settle` times untimed, then `burst` times timed, back to back, as a training
    loop runs: the timed runs see the steady state of that loop. Measured here, the first runs
    of a turn are not it: with more than one thread, the other framework's worker threads keep
    spinning for a while after its last task (a PyTorch op right after numpy's 2-thread matmuls
    took 2.5-4x its time), and after a pause, a step that hands work to a second thread ran at
    one thread's speed for a step or two (a copilot-tiny step: 21 ms back to back, 32 ms after
    0.25 s of sleep).
    """
    times = {name: [] for name in fns}
    while any(len(t) < repeats for t in times.values()):
        for name, fn in fns.items():
            for _ in range(settle):
                fn()
            for _ in range(min(burst, repeats - len(times[name]))):
                start = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - start)
    return times


def median(values) -> float:
    return statistics.median(values)
