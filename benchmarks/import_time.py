"""`import tinytorch` time, in fresh interpreters: the median of N runs. Also checks that it
imports neither gradio nor huggingface_hub (nor torch), and times what a student's script
imports next (nn, optim, text, generate).

    python benchmarks/import_time.py [--runs 7]
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET = 0.5  # seconds, issue 6

PROBE = r"""
import json, sys, time
start = time.perf_counter()
import numpy
numpy_done = time.perf_counter()
import tinytorch
core = time.perf_counter()
import tinytorch.nn, tinytorch.optim, tinytorch.text, tinytorch.generate, tinytorch.training
full = time.perf_counter()
heavy = [m for m in ("gradio", "huggingface_hub", "torch", "transformers") if m in sys.modules]
print(json.dumps({"numpy": numpy_done - start, "tinytorch": core - start, "full": full - start, "heavy": heavy}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    results = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, check=True)
        results.append(json.loads(out.stdout))
    med = {k: statistics.median(r[k] for r in results) for k in ("numpy", "tinytorch", "full")}
    heavy = sorted({m for r in results for m in r["heavy"]})
    print(f"# {sys.executable}, median of {args.runs} fresh interpreters; load avg "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print("| import | seconds | budget |")
    print("|---|---:|---|")
    print(f"| numpy alone | {med['numpy']:.3f} | |")
    print(f"| `import tinytorch` (numpy included) | {med['tinytorch']:.3f} | <= {BUDGET} s "
          f"{'met' if med['tinytorch'] <= BUDGET else 'MISSED'} |")
    print(f"| + nn, optim, text, generate, training | {med['full']:.3f} | |")
    print(f"heavy modules imported: {', '.join(heavy) if heavy else 'none'} (gradio, huggingface_hub, torch, transformers)")


if __name__ == "__main__":
    main()
