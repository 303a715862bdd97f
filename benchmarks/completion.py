"""Code completion quality and latency of the shipped Copilot, decoded in different ways.

Places: 200 starts of indented code lines (after the indentation; not comments) in the standard
library's validation files (pretrain's split: the files the copilot never trained on), each with
the 300 characters before it as the prompt. For each decoding, in line and block mode:
- broken: the share of suggestions a student would call broken (tinytorch.suggestion_checks:
  only whitespace, leading whitespace after the prompt's indentation, a run of 4+ spaces after a
  line's first character, a loop, a repeated line, a line or block cut by the cap), for the first
  suggestion (of all places) and for every one listed (Try it lists 3);
- none: the places where the decoding offers no suggestion at all;
- exact line: the first suggestion's first line equals the rest of the real line;
- edit similarity: 1 - Levenshtein distance / the longer length, between those two, averaged;
- latency: median and p95 seconds per call (the demo's call: 3 suggestions), one thread.
Then, with --own-lines, the demo's fine-tune (100 steps, its defaults) on each shipped example,
and the lines of the example completed exactly (demos/lines.py) before and after.

    python benchmarks/completion.py [--checkpoint checkpoints/copilot] [--places 200] [--own-lines]
        [--modes line block] [--beams 8 ...] [--length-penalty 1.0 ...] [--sampling] [--no-constraints]
        [--max-new-tokens 80]
"""

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402  (before numpy: it sets the BLAS thread count)

CONTEXT = 300


def places(val_files, tokenizer, count: int, seed: int = 0):
    """[(prompt, the rest of the line)] at `count` starts of indented code lines, spread by a seeded draw."""
    import numpy as np

    from demos.names import prose_test

    found = []
    for _, text in val_files:
        text = tokenizer.normalize(text)
        in_prose = prose_test(text)
        start = 0
        for line in text.split("\n"):
            code = line.lstrip(" ")
            begin = start + len(line) - len(code)
            if (begin >= CONTEXT and begin > start and code.strip() and not code.startswith("#")
                    and not (in_prose and in_prose(begin))):
                found.append((text[begin - CONTEXT:begin], code.rstrip()))
            start += len(line) + 1
    rng = np.random.default_rng(seed)
    chosen = sorted(rng.choice(len(found), size=min(count, len(found)), replace=False))
    return [found[i] for i in chosen]


def generated(model, tokenizer, kwargs):
    """suggest(prompt) -> the texts generate() returns with these kwargs, each once (as Try it lists them)."""
    def suggest(prompt):
        ids = tokenizer.encode(prompt)
        texts = []
        for s in model.generate(ids, tokenizer=tokenizer, output_scores=True, **kwargs):
            text = tokenizer.decode(s.ids[len(ids):])
            texts += [text] if text not in texts else []
        return texts
    return suggest


def the_demos(model, tokenizer, mode, max_new_tokens):
    """suggest(prompt) -> what Try it lists (demos.decoding.suggest; a block that does not fit gives way to the line)."""
    from demos import decoding

    def suggest(prompt):
        found = decoding.suggest(model, tokenizer, prompt, mode, {"max_new_tokens": max_new_tokens},
                                 decoding.SUGGESTIONS)
        return [text for text, p in found if (text, p) != decoding.NO_SUGGESTION]
    return suggest


def measure(suggest, cases, mode) -> dict:
    """The figures of one decoding (suggest(prompt) -> texts) over the cases, its suggestions judged as `mode`'s."""
    import numpy as np

    from demos.lines import first_line
    from tinytorch.suggestion_checks import REASONS, why_broken

    first, listed, none, exact, similarity, seconds = [], [], 0, 0, [], []
    for prompt, rest in cases:
        start = time.perf_counter()
        texts = suggest(prompt)
        seconds.append(time.perf_counter() - start)
        if not texts:
            none += 1
            continue
        reasons = [why_broken(prompt, text, mode) for text in texts]
        first.append(reasons[0])
        listed += reasons
        line = first_line(texts[0])
        exact += line == rest
        similarity.append(edit_similarity(line, rest))
    n = len(cases)
    return {"first": sum(r is not None for r in first) / n, "listed": sum(r is not None for r in listed),
            "count": len(listed), "none": none, "why": {k: listed.count(k) for k in REASONS},
            "exact": exact / n, "similarity": float(np.mean(similarity)) if similarity else 0.0,
            "median": float(np.median(seconds)), "p95": float(np.percentile(seconds, 95))}


def decodings(args) -> list:
    """[(label, the mode its suggestions are judged as, generate's kwargs, or "demo")]: the table's rows."""
    from demos import copilot, decoding
    from tinytorch import completion
    from tinytorch.code_constraints import CodeConstraints

    cap = args.max_new_tokens = args.max_new_tokens or copilot.MAX_NEW
    rows = []
    if "line" in args.modes:
        rows += [("greedy, 60 characters (the former default)", "free", {"max_new_tokens": 60, "temperature": 0.0}),
                 ("greedy, to the end of the line", "line", {"max_new_tokens": cap, "temperature": 0.0, "stop": "line"})]
    if args.sampling:
        for guard in ({}, {"repetition_penalty": 1.2}, {"no_repeat_ngram_size": 6}, {"no_repeat_ngram_size": 12}):
            rows.append((f"sampling T=0.8 top-p 0.95, line {guard or 'no guard'}", "line",
                         {"max_new_tokens": cap, "temperature": 0.8, "top_p": 0.95, "seed": 0, "stop": "line",
                          **guard}))
        settings = {"max_new_tokens": cap, "temperature": copilot.TEMPERATURE, "top_k": None,
                    "top_p": copilot.TOP_P, "seed": 0}
        rows.append((f"the demo's sample mode (T={copilot.TEMPERATURE:g}, top-p {copilot.TOP_P:g}, "
                     f"repetition_penalty {completion.REPETITION_PENALTY:g})", "free",
                     decoding.options("sample", settings)))
    for mode in args.modes:
        for beams in args.beams:
            for penalty in args.length_penalty:
                default = (beams, penalty) == (completion.NUM_BEAMS, completion.LENGTH_PENALTY)
                label = (f"beam {beams}, {mode}, length_penalty {penalty:g}"
                         + (" (the demo's default)" if default else ""))
                kwargs = {**decoding.options(mode, {"max_new_tokens": cap}, decoding.SUGGESTIONS),
                          "num_beams": beams, "length_penalty": penalty}
                if args.no_constraints:
                    kwargs["constraints"] = None
                rows.append((label, mode, kwargs))
                if default and not args.no_constraints:  # what the syntax rule changes, in the same run
                    rows.append((f"beam {beams}, {mode}, without the syntax rule (code_syntax)", mode,
                                 {**kwargs, "constraints": CodeConstraints(parses=False)}))
    if "block" in args.modes and not args.no_constraints:
        rows.append(("Try it's block mode (demos.decoding.suggest: the line when no block fits)", "block", "demo"))
    return rows


def edit_similarity(a: str, b: str) -> float:
    if not a and not b:
        return 1.0
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return 1.0 - previous[-1] / max(len(a), len(b))


def own_lines(checkpoint):
    """The demo's fine-tune on each shipped example; lines of its held-out part completed before and after."""
    from demos.copilot import Copilot
    from demos.common import examples
    from demos.lines import line_cases, lines_completed

    app = Copilot([checkpoint])
    print("\n| example | held-out lines | pretrained | fine-tuned (100 steps) |\n|---|---:|---:|---:|")
    for name, text in examples().items():
        session = None
        for _, _, session in app.finetune(text):
            pass
        tokenizer = session.base.tokenizer
        text = session.text
        cases = line_cases(text, 16, len(session.split.train), len(text))  # the part it never trained on
        before = lines_completed(session.base.model, tokenizer, cases)
        after = lines_completed(session.model, tokenizer, cases)
        print(f"| {name} | {len(cases)} | {before} | {after} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", default=os.path.join(harness.ROOT, "checkpoints", "copilot"))
    parser.add_argument("--places", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, help="the cap (default: the demo's)")
    parser.add_argument("--beams", type=int, nargs="*", default=None, help="beam counts to measure "
                        "(default: the demo's)")
    parser.add_argument("--length-penalty", type=float, nargs="*", default=None)
    parser.add_argument("--sampling", action="store_true", help="compare repetition guards for sampling")
    parser.add_argument("--own-lines", action="store_true", help="also fine-tune on the examples (minutes)")
    parser.add_argument("--skip-places", action="store_true", help="only --own-lines")
    parser.add_argument("--modes", nargs="*", default=["line", "block"], choices=["line", "block"],
                        help="the completion modes to measure beam search in")
    parser.add_argument("--no-constraints", action="store_true",
                        help="beam search without tinytorch.code_constraints (as before they existed)")
    harness.add_common_args(parser, default_threads=1)
    args = parser.parse_args()
    harness.start(args, compare_torch=False)
    from pretrain.corpus import load_corpus
    from tinytorch import completion
    from tinytorch.nn import GPT
    from tinytorch.text import CharTokenizer

    args.beams = args.beams or [completion.NUM_BEAMS]
    args.length_penalty = args.length_penalty if args.length_penalty is not None else [completion.LENGTH_PENALTY]
    if not args.skip_places:
        model = GPT.from_pretrained(args.checkpoint)
        tokenizer = CharTokenizer.from_pretrained(args.checkpoint)
        cases = places(load_corpus().val, tokenizer, args.places)
        print(f"# {args.checkpoint}: {len(cases)} places at the start of indented code lines in the standard "
              f"library's validation files, {CONTEXT} characters of context")
        from tinytorch.suggestion_checks import REASONS

        print(f"| decoding | broken: first | broken: all listed | none | {' / '.join(REASONS)} (listed) | "
              "exact line | edit similarity | median s | p95 s |")
        print("|---|---:|---:|---:|---|---:|---:|---:|---:|")
        for label, mode, kwargs in decodings(args):
            suggest = (the_demos(model, tokenizer, mode, args.max_new_tokens) if kwargs == "demo"
                       else generated(model, tokenizer, kwargs))
            r = measure(suggest, cases, mode)
            why = " / ".join(str(r["why"][k]) for k in REASONS)
            listed = r["listed"] / max(r["count"], 1)
            print(f"| {label} | {r['first']:.1%} | {listed:.1%} ({r['listed']} of {r['count']}) | {r['none']} | "
                  f"{why} | {r['exact']:.1%} | {r['similarity']:.2f} | {r['median']:.3f} | {r['p95']:.3f} |",
                  flush=True)
    if args.own_lines:
        own_lines(args.checkpoint)


if __name__ == "__main__":
    main()
