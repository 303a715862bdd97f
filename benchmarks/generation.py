"""Generation speed at batch 1: tokens per second for 200 new tokens with the KV cache and
recomputing the context at every token (use_cache=False), for both Copilot sizes.

Both runs take the same tokens (tinytorch.generate's window policy: past the window, restart from
its last 3/4), so the ratio is the cache's speedup alone. Sampling at temperature 0.8, seed 0.

    python benchmarks/generation.py [--new-tokens 200] [--repeats 5] [--copilot-embd 96]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)

TARGET = 3.0  # issue 6: cached at least 3x uncached


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    harness.add_common_args(parser)
    args = parser.parse_args()
    harness.start(args, compare_torch=False)
    import numpy as np

    import tinytorch
    from tinytorch.nn import GPT

    print(f"# batch 1, {args.prompt_tokens}-token prompt, {args.new_tokens} new tokens, temperature 0.8; "
          f"median of {args.repeats}, cached and uncached taking turns")
    print("| model | shape | cached tokens/s | uncached tokens/s | speedup | target |")
    print("|---|---|---:|---:|---:|---|")
    for label, _, config in harness.shapes(["copilot-tiny", "copilot"], args.copilot_embd):
        tinytorch.manual_seed(0)
        model = GPT(config)
        prompt = np.random.default_rng(0).integers(0, config.vocab_size, args.prompt_tokens)
        outputs = {}

        def run(use_cache):
            outputs[use_cache] = model.generate(prompt, args.new_tokens, temperature=0.8, seed=0, use_cache=use_cache)

        times = harness.interleaved({"cached": lambda: run(True), "uncached": lambda: run(False)},
                                    args.repeats, burst=1, settle=1)
        if outputs[True] != outputs[False]:
            print(f"# warning: {label}: cached and uncached generations differ", file=sys.stderr)
        cached = args.new_tokens / harness.median(times["cached"])
        uncached = args.new_tokens / harness.median(times["uncached"])
        speedup = cached / uncached
        print(f"| {label} | {harness.describe(config)} | {cached:.0f} | {uncached:.0f} | {speedup:.1f}x | "
              f">= {TARGET:g}x {'met' if speedup >= TARGET else 'MISSED'} |", flush=True)


if __name__ == "__main__":
    main()
