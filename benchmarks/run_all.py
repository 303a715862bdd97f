"""Every performance table of issue 6, one script after the other, each in a fresh interpreter
(so that thread settings, allocator tuning and memory readings do not leak between them):
training step vs PyTorch, generation with and without the KV cache, the demo fine-tune, memory
over a pretraining run, import time.

    python benchmarks/run_all.py [--quick] [--threads 2] [--threading tinytorch|blas|default] [--copilot-embd 96]

--quick: fewer repeats and 200 memory steps instead of 2,000 (a smoke run, not the figures).
"""

import argparse
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--threading", choices=["tinytorch", "blas", "default"], default=None)
    parser.add_argument("--copilot-embd", nargs="*", default=None)
    parser.add_argument("--skip", nargs="*", default=[], choices=["step_time", "generation", "finetune", "memory",
                                                                  "import_time"])
    args = parser.parse_args()
    threads = []
    if args.threads:
        threads += ["--threads", str(args.threads)]
    if args.threading:
        threads += ["--threading", args.threading]
    embd = ["--copilot-embd", *args.copilot_embd] if args.copilot_embd else []
    # memory: one run, of the largest copilot shape asked for (default: the shipped one)
    memory_embd = ["--copilot-embd", max(args.copilot_embd, key=int)] if args.copilot_embd else []
    quick = args.quick
    runs = [
        ("step_time", ["--repeats", "5" if quick else "30"] + threads + embd),
        ("generation", ["--repeats", "2" if quick else "5"] + threads + embd),
        ("finetune", ["--runs", "1" if quick else "3"] + threads + embd),
        ("memory", ["--steps", "200" if quick else "2000"] + threads + memory_embd),
        ("import_time", ["--runs", "3" if quick else "7"]),
    ]
    for name, extra in runs:
        if name in args.skip:
            continue
        command = [sys.executable, os.path.join(HERE, f"{name}.py"), *extra]
        print(f"\n## {name}: {' '.join(['python', f'benchmarks/{name}.py', *extra])}", flush=True)
        start = time.perf_counter()
        subprocess.run(command, check=True)
        print(f"({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
