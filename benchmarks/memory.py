"""Memory of a real pretraining run: `python -m pretrain copilot --steps 2000` in a child process,
with its corpus, evaluations and checkpoints, as an instructor runs it. Reads the resident set
size (RSS) the run logs every 50 steps (`rss_mb` in metrics.jsonl) and the child's peak RSS as
the kernel counted it.

Prints RSS at a few steps, the peak, and the growth from the first quarter of the run (after
step 200) to the last quarter, each the median of its readings: a training loop that leaks (a
graph kept alive, a list of losses as arrays, ...) grows every step, while one reading taken as
an evaluation or a save allocates is not growth.

    python benchmarks/memory.py [--steps 2000] [--threads 2] [--copilot-embd 96] [--keep-run DIR]
"""

import argparse
import json
import os
import resource
import subprocess
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402

PEAK_BUDGET_MB = 1024  # issue 6: peak RSS at most 1 GB
GROWTH_BUDGET = 0.10  # and RSS in the last quarter within 10% of the first (medians)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--keep-run", default="", help="run folder to keep (default: a temporary one)")
    harness.add_common_args(parser)
    args = parser.parse_args()
    (embd,) = args.copilot_embd[-1:]  # one run, of the last shape asked for
    harness.start(args, compare_torch=False, malloc="malloc: tuned by pretrain")  # the run gets --threads
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep_run or os.path.join(tmp, "run")
        command = [sys.executable, "-m", "pretrain", "copilot", "--steps", str(args.steps), "--n-embd", str(embd),
                   "--threads", str(args.threads), "--out", out, "--quiet"]
        print(f"# {' '.join(['python', *command[1:]])}")
        start = time.perf_counter()
        subprocess.run(command, cwd=harness.ROOT, check=True)
        seconds = time.perf_counter() - start
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # KiB on Linux -> MiB
        with open(os.path.join(out, "metrics.jsonl")) as f:
            rss = {r["step"]: r["rss_mb"] for r in map(json.loads, f) if r.get("kind") == "train"}
    shown = sorted({s for s in (50, 200, 500, 1000, args.steps // 2, args.steps) if s in rss})
    print(f"# {args.steps} steps in {seconds:.0f} s, evaluations and checkpoints included")
    print("| step | RSS MiB |")
    print("|---:|---:|")
    for step in shown:
        print(f"| {step} | {rss[step]:.0f} |")
    steps = sorted(rss)
    early = [s for s in steps if 200 <= s <= max(200, args.steps // 4)] or steps[:1]
    late = [s for s in steps if s > args.steps * 3 // 4] or steps[-1:]
    growth = statistics.median(rss[s] for s in late) / statistics.median(rss[s] for s in early) - 1
    print(f"peak RSS {peak:.0f} MiB (budget {PEAK_BUDGET_MB}: {'met' if peak <= PEAK_BUDGET_MB else 'MISSED'}); "
          f"median RSS of steps {late[0]}-{late[-1]} vs steps {early[0]}-{early[-1]}: {growth:+.1%} "
          f"(budget +-{GROWTH_BUDGET:.0%}: {'met' if abs(growth) <= GROWTH_BUDGET else 'MISSED'})")


if __name__ == "__main__":
    main()
