"""The Copilot demo's fine-tune, as a student runs it: the time 100 steps take with the demo's
defaults, and what they change. For each checkpoint and each shipped example: seconds, loss on
the example (bits per character), how many of the example's own names greedy decoding completes
from 3 typed characters, and the default comparison prompts' completions, before and after.

    python benchmarks/demo_finetune.py [CHECKPOINT ...] [--steps 100 --lr 0.003 --batch-size 8]
        [--examples pantry.py] [--quiet] [--default-malloc]

CHECKPOINT: a folder; default: the shipped checkpoints/copilot-tiny and checkpoints/copilot.
The budget: 100 steps within 10 s on copilot and 2 s on copilot-tiny, on 2 cores.
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
from demos import names  # noqa: E402
from demos.common import examples, shipped  # noqa: E402
from tinytorch.evaluate import text_metrics  # noqa: E402

BUDGET = {"copilot-tiny": 2.0, "copilot": 10.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="*")
    parser.add_argument("--steps", type=int, default=C.STEPS)
    parser.add_argument("--lr", type=float, default=None, help="default: the demo's, recommended_lr(model)")
    parser.add_argument("--batch-size", type=int, default=C.BATCH)
    parser.add_argument("--examples", nargs="*", default=None, help="example file names (default: all)")
    parser.add_argument("--quiet", action="store_true", help="figures only, no completions")
    parser.add_argument("--default-malloc", action="store_true",
                        help="keep glibc's own malloc thresholds (TINYTORCH_TUNE_MALLOC=0): what tune_malloc saves")
    args = parser.parse_args()
    if args.default_malloc:
        os.environ["TINYTORCH_TUNE_MALLOC"] = "0"
    demos.configure_process()
    folders = args.checkpoints or [str(shipped(n)) for n in ("copilot-tiny", "copilot") if shipped(n).is_dir()]
    if not folders:
        sys.exit("no checkpoint: pass a folder, or create checkpoints/copilot-tiny with python -m pretrain")
    texts = {k: v for k, v in examples().items() if not args.examples or k in args.examples}
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"BLAS threads {os.environ.get('OPENBLAS_NUM_THREADS', 'default')}; steps {args.steps}, "
          f"lr {args.lr or 'the demo default'}, batch {args.batch_size}, context {C.CONTEXT}")
    print("| checkpoint | example | seconds | lr | bits/char before → after | own names before → after |")
    print("|---|---|---|---|---|---|")
    shown = []
    for folder in folders:
        app = C.Copilot([folder])
        label = os.path.basename(folder.rstrip("/"))
        for name, text in texts.items():
            _, session = app.load(folder)
            tokenizer = session.base.tokenizer
            cases = names.completion_cases(text)
            before = (text_metrics(session.base.model, tokenizer, [text])["bits_per_char"],
                      names.names_completed(session.base.model, tokenizer, cases))
            start = time.perf_counter()
            for status, _, _ in app.finetune(text, args.steps, args.lr, args.batch_size, session=session):
                pass
            seconds = time.perf_counter() - start
            after = (text_metrics(session.model, tokenizer, [text])["bits_per_char"],
                     names.names_completed(session.model, tokenizer, cases))
            budget = BUDGET.get(label)
            flag = "" if budget is None else (" (within %g s)" % budget if seconds <= budget else
                                              " (OVER the %g s budget)" % budget)
            lr = session.settings["lr"]
            print(f"| {label} | {name} | {seconds:.2f}{flag} | {lr:g} | {before[0]:.2f} → {after[0]:.2f} | "
                  f"{before[1]}/{len(cases)} → {after[1]}/{len(cases)} |", flush=True)
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
