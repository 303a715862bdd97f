"""Do two runs of one preset track each other? The logged training losses of two run folders (or
exported checkpoints, which keep metrics.jsonl) side by side, step by step, with their seconds per
step: how the numpy engine on a CPU follows the torch engine on a GPU from the same seed (both
draw the same batches, start from the same weights and follow the same schedule).

    python benchmarks/engines_track.py RUN_A RUN_B [--steps 500]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path


def train_records(folder: Path) -> dict:
    """{step: record} of the train records in folder's metrics.jsonl."""
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r for r in map(json.loads, filter(str.strip, lines)) if r.get("kind") == "train"}


def seconds_per_step(records: dict, upto: int) -> float:
    """The median over logged intervals (a resume or an evaluation inside one shows as an outlier)."""
    steps = sorted(s for s in records if s <= upto)
    return statistics.median((records[b]["elapsed"] - records[a]["elapsed"]) / (b - a)
                             for a, b in zip(steps, steps[1:]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs=2, type=Path, metavar="RUN")
    parser.add_argument("--steps", type=int, default=500, help="compare the logged steps up to this one")
    args = parser.parse_args(argv)
    a, b = (train_records(run) for run in args.runs)
    shared = [s for s in sorted(a) if s in b and s <= args.steps]
    if not shared:
        print("error: the two runs logged no step in common", file=sys.stderr)
        return 1
    print(f"| step | {args.runs[0]} loss | {args.runs[1]} loss | difference |")
    print("|---:|---:|---:|---:|")
    for step in shared:
        print(f"| {step} | {a[step]['loss']:.4f} | {b[step]['loss']:.4f} | {b[step]['loss'] - a[step]['loss']:+.4f} |")
    gaps = [abs(b[s]["loss"] - a[s]["loss"]) / a[s]["loss"] for s in shared]
    print(f"\n{len(shared)} logged steps: largest relative difference {max(gaps):.2%}, median {statistics.median(gaps):.2%}")
    for run, records in zip(args.runs, (a, b)):
        print(f"{run}: median {seconds_per_step(records, args.steps):.3f} s per step up to step {args.steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
