"""Memory of a pretraining run: resident set size (RSS) over N training steps of the Copilot
shape, as pretraining runs them (tune_malloc, AdamW, train_step with clipping, random windows).

Prints RSS at a few steps, the peak, and the growth from step 200 to the last step: a training
loop that leaks (a graph kept alive, a list of losses as arrays, ...) grows every step.

    python benchmarks/memory.py [--steps 2000] [--batch 32] [--copilot-embd 96]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)

PEAK_BUDGET_MB = 1024  # issue 6: peak RSS at most 1 GB
GROWTH_BUDGET = 0.10  # and RSS at the last step within 10% of step 200


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=32, help="default: the copilot pretraining preset's")
    harness.add_common_args(parser)
    args = parser.parse_args()
    harness.setup_threads(args.threads, args.threading)
    import numpy as np

    import tinytorch
    from tinytorch.memory import peak_rss_bytes, rss_bytes
    from tinytorch.nn import GPT
    from tinytorch.optim import AdamW, cosine_lr, weight_decay_groups
    from tinytorch.training import sample_batch, train_step

    malloc = harness.tune_malloc(args.no_tune_malloc)
    print(harness.machine(args.threads, None, malloc).replace("PyTorch not installed: tinytorch columns only",
                                                               "tinytorch only"))
    mb = 1 / 2**20
    checkpoints = sorted({s for s in (1, 10, 100, 200, 500, 1000, args.steps // 2, args.steps) if s <= args.steps})
    for label, _, config in harness.shapes(["copilot"], args.copilot_embd):
        tinytorch.manual_seed(0)
        model = GPT(config)
        optimizer = AdamW(weight_decay_groups(model, 0.1), lr=2e-3, betas=(0.9, 0.95))
        ids = np.random.default_rng(0).integers(0, config.vocab_size, 1_000_000)
        rng = np.random.default_rng(1)
        print(f"# {label} ({harness.describe(config)}, {model.num_parameters():,} parameters), batch {args.batch}, "
              f"{args.steps} steps; RSS before the first step {rss_bytes() * mb:.0f} MiB")
        print("| step | RSS MiB | seconds so far |")
        print("|---:|---:|---:|")
        rss, start = {}, time.perf_counter()
        for step in range(1, args.steps + 1):
            optimizer.set_lr(cosine_lr(step, 2e-3, 200, args.steps, 2e-4))
            x, y = sample_batch(ids, args.batch, config.n_positions, rng)
            train_step(model, optimizer, x, y, max_grad_norm=1.0, step=step)
            if step in checkpoints:
                rss[step] = rss_bytes() * mb
                print(f"| {step} | {rss[step]:.0f} | {time.perf_counter() - start:.0f} |", flush=True)
        peak = max(peak_rss_bytes() * mb, max(rss.values()))  # the kernel's peak, or what we saw
        first = rss.get(200, rss[min(rss)])
        growth = rss[args.steps] / first - 1
        print(f"peak RSS {peak:.0f} MiB (budget {PEAK_BUDGET_MB}: {'met' if peak <= PEAK_BUDGET_MB else 'MISSED'}); "
              f"RSS step {args.steps} vs step {200 if 200 in rss else min(rss)}: {growth:+.1%} "
              f"(budget +-{GROWTH_BUDGET:.0%}: {'met' if abs(growth) <= GROWTH_BUDGET else 'MISSED'})")


if __name__ == "__main__":
    main()
