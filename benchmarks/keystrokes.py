"""Keystrokes saved by the shipped Copilots' suggestions (tinytorch.keystrokes), word by word and
line by line, with and without the code constraints (tinytorch.code_constraints), on the same
samples.

Samples: 1,500 characters typed from a line start at a seeded place in a seeded choice of files,
the text before it in the file as context (not counted):
- validation: the standard library's validation files (pretrain's split: never trained on);
- third-party: the code of some packages installed beside this Python (site-packages; by default
  gradio, numpy, huggingface_hub, httpx, click, jinja2; tests left out), which no model here
  trained on.
Word: the greedy next word (completion.word_options) at every position, one forward pass per
sample. Saved = 1 - keys / characters, a Tab counted as a key; the last column gives the share of
the characters that accepted suggestions wrote (the Tabs not charged). Line: the line completion (completion.beam_options, a beam search) at every position:
a few seconds a hundred characters, so fewer samples (--line-samples). With --word-beams N, the
next word by a beam search of N too (calling generate at every position, on the line samples),
beside greedy on the same samples. The anchor: labml's python_autocomplete reports "above 30%
key strokes in most files, close to 50% in some".

    python benchmarks/keystrokes.py [--checkpoint DIR ...] [--samples 20] [--line-samples 2]
        [--packages gradio numpy ...] [--chars 1500] [--list-files] [--units word line]
        [--word-beams 4]
"""

import argparse
import os
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)

PACKAGES = ("gradio", "numpy", "huggingface_hub", "httpx", "click", "jinja2")


def third_party_files(packages) -> list:
    """[(path relative to site-packages, text)] of the packages' .py files, tests left out."""
    root = Path(sysconfig.get_paths()["purelib"])
    found = []
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).parts
            if any(p in ("tests", "test", "testing") or p.startswith("test_") for p in parts):
                continue
            found.append((str(path.relative_to(root)), path.read_text(encoding="utf-8", errors="replace")))
    return found


def samples(files, tokenizer, count: int, chars: int, seed: int = 0) -> list:
    """[(file, text up to the sample's end, where the sample starts)]: `count` places, each in a
    file drawn at random (among files long enough) and at a line start drawn at random."""
    import numpy as np

    rng = np.random.default_rng(seed)
    files = [(path, tokenizer.normalize(text)) for path, text in files]
    files = [(path, text) for path, text in files if len(text) >= 2 * chars]
    out = []
    for i in rng.choice(len(files), size=min(count, len(files)), replace=False):
        path, text = files[i]
        starts = [k + 1 for k in range(chars, len(text) - chars) if text[k] == "\n"]
        start = starts[rng.integers(len(starts))]
        out.append((path, text[:start + chars], start))
    return out


def measure(model, tokenizer, places, unit, constraints, beams: int = 1) -> dict:
    """Keys and characters summed over the places, and each place's saved share (beams > 1: the
    unit's defaults with a beam search of that many)."""
    from tqdm import tqdm

    from tinytorch import completion
    from tinytorch.keystrokes import keystrokes_saved

    keys = characters = written = 0
    each = []
    with tqdm(total=sum(len(text) - start for _, text, start in places), unit="char", leave=False,
              desc=f"{unit}, beams {beams}, constraints {'on' if constraints else 'off'}", file=sys.stderr) as bar:
        for _, text, start in places:
            options = {**completion.options(unit), "constraints": constraints}
            if beams > 1:
                options.update(num_beams=beams, length_penalty=completion.LENGTH_PENALTY)
            r = keystrokes_saved(model, tokenizer, text, unit, start, options, progress=bar.update)
            keys += r["keys"]
            characters += r["characters"]
            written += r["accepted_characters"]
            each.append(r["saved"])
    return {"saved": 1 - keys / characters, "written": written / characters, "each": each}


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", nargs="*", default=[os.path.join(harness.ROOT, "checkpoints", name)
                                                             for name in ("copilot", "copilot-tiny")])
    parser.add_argument("--samples", type=int, default=20, help="samples per kind of text, word level")
    parser.add_argument("--line-samples", type=int, default=2, help="samples per kind of text, line level (slow)")
    parser.add_argument("--chars", type=int, default=1500, help="characters typed per sample")
    parser.add_argument("--packages", nargs="*", default=list(PACKAGES), help="site-packages for third-party code")
    parser.add_argument("--units", nargs="*", default=["word", "line"], choices=["word", "line"])
    parser.add_argument("--list-files", action="store_true", help="print the sampled files")
    parser.add_argument("--word-beams", type=int, default=0, help="also the next word by a beam search of N "
                        "(slow: on the line samples)")
    harness.add_common_args(parser, default_threads=1)
    args = parser.parse_args()
    harness.start(args, compare_torch=False)
    import numpy as np

    from pretrain.corpus import load_corpus
    from tinytorch.pretrained import load

    kinds = {"validation": load_corpus().val, "third-party": third_party_files(args.packages)}
    print(f"# samples of {args.chars:,} characters from a line start: {args.samples} per kind word by word, "
          f"the first {args.line_samples} of them line by line; third-party: {', '.join(args.packages)} "
          f"({len(kinds['third-party'])} files)")
    print("| checkpoint | text | unit | samples | saved, no constraints | saved, constraints | "
          "per sample (constraints): min / median / max | written by accepted suggestions (constraints) |")
    print("|---|---|---|---:|---:|---:|---|---:|")
    for checkpoint in args.checkpoint:
        model, tokenizer = load(checkpoint)
        for kind, files in kinds.items():
            places = samples(files, tokenizer, args.samples, args.chars)
            if args.list_files:
                print(f"# {kind}: " + ", ".join(f"{path}@{start}" for path, _, start in places))
            for unit in args.units:
                chosen = places if unit == "word" else places[:args.line_samples]
                off = measure(model, tokenizer, chosen, unit, None)
                on = measure(model, tokenizer, chosen, unit, True)
                low, mid, high = np.percentile(on["each"], [0, 50, 100])
                print(f"| {Path(checkpoint).name} | {kind} | {unit} | {len(chosen)} | {off['saved']:.1%} | "
                      f"{on['saved']:.1%} | {low:.1%} / {mid:.1%} / {high:.1%} | {on['written']:.1%} |", flush=True)
            if args.word_beams > 1:
                chosen = places[:args.line_samples]
                greedy = measure(model, tokenizer, chosen, "word", True)
                beam = measure(model, tokenizer, chosen, "word", True, args.word_beams)
                print(f"| {Path(checkpoint).name} | {kind} | word: greedy / beam {args.word_beams} | {len(chosen)} | | "
                      f"{greedy['saved']:.1%} / {beam['saved']:.1%} | | |", flush=True)


if __name__ == "__main__":
    main()
