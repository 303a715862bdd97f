"""A pretraining preset on PyTorch: step time, tokens/s and bits/char, per engine option.

    python benchmarks/gpu_pretrain.py [--model copilot-large] [--steps N] [--corpus PATH]

Runs `python -m pretrain MODEL --engine torch` (the real command: its data, loop, evaluation and
step folders) for a fixed number of steps in a temporary folder, once per variant: on CUDA eager
float32, --bf16, --compile and both (MODEL copilot-large by default); on a CPU (a smoke test:
figures that matter come from a GPU) the numpy engine and the torch engine, for a few steps of
the copilot. The step time is the mean over the logged steps after the first log (so a compile
and the first evaluation are left out); bits/char is the run's last evaluation, on a short slice
of the validation files (--eval-chars characters): a check that every variant learns, not a
figure to compare with full validation.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
import harness  # noqa: E402


def run_variant(model: str, flags: list[str], args, folder: Path) -> dict:
    from pretrain.__main__ import run
    from pretrain.config import PRESETS

    steps, batch_size = args.steps, args.batch_size
    log_every = max(1, steps // 10)
    argv = [model, *flags, "--steps", str(steps), "--batch-size", str(batch_size), "--out", str(folder),
            "--eval-every", str(steps), "--save-every", str(steps), "--log-every", str(log_every),
            "--eval-chars", str(args.eval_chars), "--eval-identifiers", "20", "--quiet",
            *(["--corpus", args.corpus] if args.corpus else [])]
    started = time.perf_counter()
    if run(argv) != 0:
        raise SystemExit(f"python -m pretrain {' '.join(argv)} failed")
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    first, last = train[0], train[-1]
    step_s = (last["elapsed"] - first["elapsed"]) / (last["step"] - first["step"])
    final = [r for r in records if r["kind"] == "eval"][-1]
    return {"step_ms": 1000 * step_s, "tokens_s": batch_size * PRESETS[model].n_positions / step_s,
            "bits_per_char": final["val_bits_per_char"],
            "loss": last["loss"], "wall_s": time.perf_counter() - started}


def main(argv=None):
    import torch

    from pretrain.config import PRESETS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    cuda = torch.cuda.is_available()
    parser.add_argument("--model", choices=sorted(PRESETS), default="copilot-large" if cuda else "copilot",
                        help="the preset whose shape and recipe run (default: copilot-large on CUDA, copilot on a CPU)")
    parser.add_argument("--steps", type=int, default=500 if cuda else 30, help="steps of each variant")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-chars", type=int, default=20_000, help="validation characters scored at the end")
    parser.add_argument("--corpus", default="", help="as for python -m pretrain (default: the standard library)")
    args = parser.parse_args(argv)
    preset = PRESETS[args.model]
    if cuda:
        where = f"CUDA: {torch.cuda.get_device_name()}, torch {torch.__version__}"
        variants = {"torch eager float32": ["--engine", "torch", "--device", "cuda"],
                    "torch --bf16": ["--engine", "torch", "--device", "cuda", "--bf16"],
                    "torch --compile": ["--engine", "torch", "--device", "cuda", "--compile"],
                    "torch --compile --bf16": ["--engine", "torch", "--device", "cuda", "--compile", "--bf16"]}
    else:
        where = (f"CPU: {harness.cpu_name()}, torch {torch.__version__}. No CUDA here: a short smoke test of the "
                 "script; the figures that matter come from a GPU")
        variants = {"numpy engine": ["--engine", "numpy"], "torch engine (CPU)": ["--engine", "torch", "--device", "cpu"]}
    print(f"# {args.model} (n_embd {preset.n_embd}, {preset.n_layer} layers, context {preset.n_positions}), "
          f"batch {args.batch_size}, {args.steps} steps; {where}")
    print("| variant | step ms | tokens/s | val bits/char | train loss | wall s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, flags in variants.items():
        with tempfile.TemporaryDirectory() as tmp:
            r = run_variant(args.model, flags, args, Path(tmp) / "run")
        print(f"| {name} | {r['step_ms']:.2f} | {r['tokens_s']:,.0f} | {r['bits_per_char']:.3f} | {r['loss']:.3f} "
              f"| {r['wall_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
