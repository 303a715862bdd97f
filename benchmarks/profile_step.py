"""Where a training step's time goes: per Function, forward and backward, for the plain loop
(forward, cross-entropy, backward, clip 1.0, AdamW), and the step's phases; then numpy's peak
of memory allocated during one step (tracemalloc sees numpy's array buffers), and a cProfile
of the Python functions that cost the most.

One thread (tinytorch and numpy's BLAS), so that each op's time is its own; tinytorch's other
defaults (malloc tuned at the first backward). The timers add a few microseconds per op.

    python benchmarks/profile_step.py [--shape copilot] [--batch 16] [--steps 20] [--cprofile 12]
"""

import argparse
import collections
import cProfile
import os
import pstats
import sys
import time
import tracemalloc

for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "TINYTORCH_NUM_THREADS"):
    os.environ[_name] = "1"  # before numpy loads its BLAS
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402


def timed_functions(forward: collections.Counter, backward_times: collections.Counter, calls: collections.Counter):
    """Wrap Function.apply and every Function's backward with timers; returns an undo function."""
    from tinytorch import functions, fused, parallel
    from tinytorch.tensor import Function

    apply = Function.__dict__["apply"]

    def timed_apply(cls, *inputs, **options):
        start = time.perf_counter()
        out = apply.__func__(cls, *inputs, **options)
        forward[cls.__name__] += time.perf_counter() - start
        calls[cls.__name__] += 1
        return out

    Function.apply = classmethod(timed_apply)
    originals = {}
    for module in (functions, fused, parallel):
        for cls in vars(module).values():
            if isinstance(cls, type) and issubclass(cls, Function) and cls is not Function:
                originals[cls] = cls.__dict__["backward"]

                def timed_backward(ctx, grad, _original=originals[cls].__func__, _name=cls.__name__):
                    start = time.perf_counter()
                    out = _original(ctx, grad)
                    backward_times[_name] += time.perf_counter() - start
                    return out

                cls.backward = staticmethod(timed_backward)

    def undo():
        Function.apply = apply
        for cls, original in originals.items():
            cls.backward = original

    return undo


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="copilot", choices=list(harness.SHAPES))
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--context", type=int, default=None, help="positions per sequence (default: the shape's)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--cprofile", type=int, default=12, help="rows of the cProfile table (0: none)")
    args = parser.parse_args()

    import numpy as np

    import tinytorch
    from tinytorch.nn import GPT
    from tinytorch.nn import functional as F
    from tinytorch.optim import AdamW, clip_grad_norm_

    print(harness.machine(1, None, "malloc: tinytorch's default (tuned at the first backward)", False))
    (_, _, config), = harness.shapes([args.shape], [harness.COPILOT_EMBD])
    T = args.context or config.n_positions
    tinytorch.manual_seed(0)
    model = GPT(config)
    optimizer = AdamW(model.optimizer_groups(0.1), lr=1e-3)
    data = np.random.default_rng(0).integers(0, config.vocab_size, (args.batch, T + 1))
    x, y = data[:, :-1], data[:, 1:]
    V = config.vocab_size
    phases = collections.Counter()

    def step():
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
        t1 = time.perf_counter()
        optimizer.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        clip_grad_norm_(model.parameters(), 1.0)
        t3 = time.perf_counter()
        optimizer.step()
        loss.item()
        t4 = time.perf_counter()
        phases["forward"] += t1 - t0
        phases["backward"] += t2 - t1
        phases["clip_grad_norm_"] += t3 - t2
        phases["AdamW step"] += t4 - t3

    for _ in range(3):
        step()
    plain = []
    for _ in range(args.steps):
        start = time.perf_counter()
        step()
        plain.append(time.perf_counter() - start)
    phases.clear()
    forward, backward, calls = collections.Counter(), collections.Counter(), collections.Counter()
    undo = timed_functions(forward, backward, calls)
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    timed = (time.perf_counter() - start) / args.steps
    undo()
    n = args.steps
    print(f"# {args.shape} ({harness.describe(config)}), batch {args.batch}, T {T}: "
          f"{1000 * harness.median(plain):.2f} ms per step (median of {n}), "
          f"{1000 * timed:.2f} ms with the per-op timers")
    print("| phase | ms | share |\n|---|---:|---:|")
    for name, seconds in phases.items():
        print(f"| {name} | {1000 * seconds / n:.2f} | {seconds / n / timed:.0%} |")
    print("\n| Function | calls | forward ms | backward ms | share |\n|---|---:|---:|---:|---:|")
    for name in sorted(calls, key=lambda k: -(forward[k] + backward[k])):
        total = (forward[name] + backward[name]) / n
        print(f"| {name} | {calls[name] // n} | {1000 * forward[name] / n:.2f} | "
              f"{1000 * backward[name] / n:.2f} | {total / timed:.0%} |")

    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    tracemalloc.reset_peak()
    step()
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    params = sum(p.size for p in model.parameters()) * 4
    print(f"\n# numpy allocated at most {peak / 2**20:.1f} MiB at once during a step, above what lived "
          f"before it (parameters, gradients and AdamW state: {3 * params / 2**20:.1f} MiB)")

    if args.cprofile:
        profile = cProfile.Profile()
        profile.enable()
        for _ in range(n):
            step()
        profile.disable()
        print(f"\n# cProfile, {n} steps, by own time (numpy's ufuncs count in their caller's own time)")
        pstats.Stats(profile, stream=sys.stdout).sort_stats("tottime").print_stats(args.cprofile)


if __name__ == "__main__":
    main()
