"""Does the demo's fine-tune learn, or memorize? Measured where it counts: on the part of each text
it never trained on.

Each text is split as the demo splits it (demos/heldout.py: the last fifth held out, at a line
boundary); the demo's fine-tune (demos/finetune.py) trains on the rest with each recipe, and the
held-out part is scored before and after: bits per character, and with --keystrokes the share of
keystrokes that word-level suggestions save (tinytorch.keystrokes). "final" is the last step's
weights; "kept" the weights the demo keeps by default, those of the best held-out evaluation
(every 10 steps; the selection sees the held-out part, so "final" is the unbiased figure for
choosing a recipe). The texts: the three shipped examples, and --val-files files of the
standard library's validation split (pretrain's: the shipped models never trained on them),
4,000-12,000 characters each.

    python benchmarks/finetune_heldout.py [--checkpoint checkpoints/copilot] [--lr 1e-4 3e-4]
        [--steps 100] [--batch-size 8] [--val-files 24] [--keystrokes] [--threads 1]
"""

import argparse
import math
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)

MIN_CHARS, MAX_CHARS = 4_000, 12_000
STDLIB = "stdlib/"  # the label prefix of validation files


def texts(tokenizer, val_files: int) -> dict:
    """{label: text}: the demo's examples, then `val_files` validation files spread over the split
    (labelled "stdlib/PATH")."""
    from demos.common import examples
    from pretrain.corpus import load_corpus

    found = dict(examples())
    sized = [(path, text) for path, text in load_corpus("", 0.1).val if MIN_CHARS <= len(text) <= MAX_CHARS]
    step = max(1, len(sized) // max(val_files, 1))
    for path, text in sized[::step][:val_files]:
        found[f"{STDLIB}{path}"] = tokenizer.normalize(text)
    return found


def held_out_figures(model, tokenizer, split, keystrokes: bool) -> dict:
    from tinytorch.evaluate import text_metrics

    figures = {"bits": text_metrics(model, tokenizer, [split.held_out])["bits_per_char"]}
    if keystrokes:
        from tinytorch.keystrokes import keystrokes_saved

        figures["saved"] = keystrokes_saved(model, tokenizer, split.train + split.held_out,
                                            start=len(split.train))["saved"]
    return figures


def measure(base, tokenizer, text: str, recipe, keystrokes: bool) -> dict:
    from demos import finetune
    from demos.common import clone
    from demos.heldout import split_text
    from tinytorch.evaluate import text_metrics

    split = split_text(text)
    before = held_out_figures(base, tokenizer, split, keystrokes)
    model = clone(base)
    start = time.perf_counter()
    for done in finetune.run(model, tokenizer, split, recipe):
        pass
    seconds = time.perf_counter() - start
    kept = held_out_figures(model, tokenizer, split, keystrokes)
    return {"before": before, "kept": kept, "seconds": seconds, "best_step": done.best_step,
            "final_bits": done.held_out / math.log(2),  # the last step's held-out loss (nats), in bits
            "train_bits": text_metrics(model, tokenizer, [split.train])["bits_per_char"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="checkpoints/copilot")
    parser.add_argument("--lr", type=float, nargs="*", default=None, help="default: the demo's recommended_lr")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--val-files", type=int, default=24)
    parser.add_argument("--keystrokes", action="store_true", help="also keystrokes saved (word level)")
    parser.add_argument("--quiet", action="store_true", help="the summary only")
    harness.add_common_args(parser, default_threads=1)
    args = parser.parse_args()
    harness.start(args, compare_torch=False)

    from demos import finetune
    from demos.heldout import HELD_OUT_PERCENT
    from tinytorch import pretrained

    base, tokenizer = pretrained.load(args.checkpoint)
    corpus = texts(tokenizer, args.val_files)
    rates = args.lr or [finetune.recommended_lr(base.config)]
    print(f"# {args.checkpoint}, {len(corpus)} texts (3 examples + {len(corpus) - 3} stdlib validation files); "
          f"held out: the last {HELD_OUT_PERCENT}% of lines; {harness.cpu_name()}, {args.threads} thread(s)")
    for lr in rates:
        recipe = finetune.Recipe(lr=lr, steps=args.steps or finetune.STEPS, batch_size=args.batch_size or finetune.BATCH)
        print(f"\n## lr {lr:g}, {recipe.steps} steps of {recipe.batch_size} x {recipe.context}")
        if not args.quiet:
            print("| text | held-out bits/char: before → final (kept, best step) | train part after | "
                  + ("keystrokes saved before → kept | " if args.keystrokes else "") + "seconds |")
            print("|---|---|---:|" + ("---|" if args.keystrokes else "") + "---:|")
        rows = {}
        for label, text in corpus.items():
            r = rows[label] = measure(base, tokenizer, text, recipe, args.keystrokes)
            if not args.quiet:
                saved = (f" {100 * r['before']['saved']:.0f}% → {100 * r['kept']['saved']:.0f}% |"
                         if args.keystrokes else "")
                print(f"| {label} | {r['before']['bits']:.3f} → {r['final_bits']:.3f} ({r['kept']['bits']:.3f}, "
                      f"step {r['best_step']}) | {r['train_bits']:.3f} |{saved} {r['seconds']:.2f} |", flush=True)
        summarize(rows, args.keystrokes)


def summarize(rows: dict, keystrokes: bool) -> None:
    val = [k for k in rows if k.startswith(STDLIB)]
    examples = [k for k in rows if k not in val]
    for name, keys in (("examples", examples), ("validation files", val)):
        final = [rows[k]["final_bits"] - rows[k]["before"]["bits"] for k in keys]
        kept = [rows[k]["kept"]["bits"] - rows[k]["before"]["bits"] for k in keys]
        if not keys:
            continue
        line = (f"- {name}: final better on {sum(d < 0 for d in final)}/{len(keys)} (mean {statistics.mean(final):+.3f}, "
                f"worst {max(final):+.3f}); kept better on {sum(d < 0 for d in kept)}/{len(keys)} "
                f"(mean {statistics.mean(kept):+.3f}, worst {max(kept):+.3f})")
        if keystrokes:
            gain = [100 * (rows[k]["kept"]["saved"] - rows[k]["before"]["saved"]) for k in keys]
            line += f"; keystrokes saved {statistics.mean(gain):+.1f} points on average"
        print(line)
    seconds = sorted(r["seconds"] for r in rows.values())
    print(f"- fine-tune seconds: median {statistics.median(seconds):.2f}, max {seconds[-1]:.2f}")


if __name__ == "__main__":
    main()
