"""Runs of spaces after a line's first other character in real code: the figures behind
tinytorch.code_constraints.MAX_SPACE_RUN and the aligned-comment exception.

Reads the standard library of this Python (pretrain's corpus, both splits) with Python's own
tokenizer and counts, for lines with code: the longest run anywhere after the first character
(strings and comments included), the gaps between two code tokens on one line, and the gap before
an inline comment.

    python benchmarks/space_runs.py
"""

import collections
import io
import os
import re
import sys
import tokenize

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SKIP_BEFORE = (tokenize.INDENT, tokenize.DEDENT, tokenize.NL, tokenize.NEWLINE)
SKIP_AFTER = (tokenize.NL, tokenize.NEWLINE, tokenize.ENDMARKER, tokenize.DEDENT)


def runs(files):
    """(longest run per line anywhere, longest gap between code tokens per line, gap before each inline comment)."""
    anywhere, code, comment = collections.Counter(), collections.Counter(), collections.Counter()
    for _, text in files:
        text = text.replace("\t", "    ")
        for line in text.split("\n"):
            body = line.lstrip(" ").rstrip(" ")
            if body:
                anywhere[max((len(m.group()) for m in re.finditer(r" +", body)), default=0)] += 1
        try:
            tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
        except (tokenize.TokenError, SyntaxError, IndentationError):
            continue
        widest = {}
        for a, b in zip(tokens, tokens[1:]):
            if a.end[0] != b.start[0] or a.type in SKIP_BEFORE or b.type in SKIP_AFTER:
                continue
            gap = b.start[1] - a.end[1]
            if gap <= 0:
                continue
            if b.type == tokenize.COMMENT:
                comment[gap] += 1
            else:
                widest[a.end[0]] = max(widest.get(a.end[0], 0), gap)
        code.update(widest.values())
    return anywhere, code, comment


def shares(counter, cuts=(1, 2, 3)) -> str:
    total = sum(counter.values())
    parts = [f"{k}: {counter[k] / total:.1%}" for k in cuts]
    parts.append(f"{cuts[-1] + 1}+: {sum(v for k, v in counter.items() if k > cuts[-1]) / total:.1%}")
    return f"{total:,} | " + " / ".join(parts)


def main():
    from pretrain.corpus import load_corpus

    corpus = load_corpus()
    anywhere, code, comment = runs(corpus.train + corpus.val)
    print(f"# {corpus.root}: {len(corpus.train) + len(corpus.val)} files")
    print("| what | count | share by run length |")
    print("|---|---:|---|")
    print(f"| lines with code, longest run after the first character (strings, comments included) | "
          f"{shares(anywhere, (0, 1, 2, 3))} |")
    print(f"| lines with a gap between code tokens, the widest | {shares(code)} |")
    print(f"| gaps before an inline comment | {shares(comment)} |")


if __name__ == "__main__":
    main()
