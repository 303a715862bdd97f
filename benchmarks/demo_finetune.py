"""The Copilot demo's fine-tune, as a student runs it: the time 100 steps take with the demo's
defaults (its held-out split, its held-out evaluations every few steps, early stopping), and what
they change. For each checkpoint and each shipped example: seconds, bits per character on the
held-out part (which the fine-tune never sees) and on the training part, before and after, and
the default comparison prompts' line completions.

    python benchmarks/demo_finetune.py [CHECKPOINT ...] [--steps 100 --lr 1e-4 --batch-size 8]
        [--examples pantry.py] [--quiet] [--default-malloc]

CHECKPOINT: a shipped name or a folder; default: copilot-tiny and copilot. The budget, on one
thread: 100 steps within 3 s on copilot (benchmarks/README.md, "Fine-tuning: held-out figures").
"""

import argparse
import os
import platform
import sys
import time

# As `python -m demos` does, before numpy loads: see demos/__init__.py.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import demos  # noqa: E402

demos.prefer_one_blas_thread()  # the process settings the demo runs with (configure_process: in main)

from demos import copilot as C  # noqa: E402
from demos.common import examples, shipped  # noqa: E402
from demos.finetune import BATCH, STEPS  # noqa: E402
from demos.heldout import split_text  # noqa: E402
from tinytorch.evaluate import text_metrics  # noqa: E402

BUDGET = {"copilot": 3.0}  # seconds for the demo's 100 steps on one thread


def bits(model, tokenizer, text: str) -> float:
    return text_metrics(model, tokenizer, [text[:C.SCORED_CHARS]])["bits_per_char"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--steps", type=int, default=STEPS)
    parser.add_argument("--lr", type=float, default=None, help="default: the demo's, recommended_lr(model)")
    parser.add_argument("--batch-size", type=int, default=BATCH)
    parser.add_argument("--examples", nargs="*", default=None, help="example file names (default: all)")
    parser.add_argument("--quiet", action="store_true", help="figures only, no completions")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's own malloc thresholds (TINYTORCH_TUNE_MALLOC=0): what tune_malloc saves")
    args = parser.parse_args()
    if args.default_malloc:
        os.environ["TINYTORCH_TUNE_MALLOC"] = "0"
    demos.configure_process()
    names = args.checkpoints or ["copilot-tiny", "copilot"]
    folders = [str(shipped(n)) if shipped(n).is_dir() else n for n in names]
    texts = {k: v for k, v in examples().items() if not args.examples or k in args.examples}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; steps {args.steps}, "
          f"lr {args.lr or 'the demo default'}, batch {args.batch_size}, held out: each text's last fifth")
    print("| checkpoint | example | seconds | lr | kept step | held-out bits/char before → after "
          "| training part before → after |")
    print("|---|---|---|---|---|---|---|")
    shown = []
    for folder in folders:
        app = C.Copilot([folder])
        label = os.path.basename(folder.rstrip("/"))
        for name, text in texts.items():
            _, session = app.load(folder)
            tokenizer, base = session.base.tokenizer, session.base.model
            split = split_text(text)
            before = bits(base, tokenizer, split.held_out), bits(base, tokenizer, split.train)
            start = time.perf_counter()
            for _ in app.finetune(text, args.steps, args.lr, args.batch_size, session=session):
                pass
            seconds = time.perf_counter() - start
            after = bits(session.model, tokenizer, split.held_out), bits(session.model, tokenizer, split.train)
            budget = BUDGET.get(label)
            flag = "" if budget is None else (" (within %g s)" % budget if seconds <= budget else
                                              " (OVER the %g s budget)" % budget)
            print(f"| {label} | {name} | {seconds:.2f}{flag} | {session.settings['lr']:g} | "
                  f"{session.kept_step if session.kept_step is not None else 'last'} | "
                  f"{before[0]:.3f} → {after[0]:.3f} | {before[1]:.3f} → {after[1]:.3f} |", flush=True)
            if not args.quiet:
                _, details = app.compare("", 40, 0.0, 0, 1.0, 0, session=session)
                shown.append((label, name, details["rows"]))
    for label, name, rows in shown:
        print(f"\n## {label}, {name}: the default line completions of the default prompts (pretrained | fine-tuned)")
        for row in rows:
            tail = row["prompt"].split("\n")[-1]
            print(f"  {tail!r:36} pre: {row['pretrained'].split(chr(10))[0]!r}")
            print(f"  {'':36} fine: {row['finetuned'].split(chr(10))[0]!r}")


if __name__ == "__main__":
    main()
