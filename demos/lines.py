"""Lines of the student's own code, and whether a model completes them: from the start of each
line (after its indentation), with the lines before it as context, does the demo's default
decoding write exactly the rest of the line? The line-level counterpart of names.py."""

from __future__ import annotations

from . import decoding
from .common import COMPUTE

MIN_CHARS = 8  # shorter lines (`else:`, `pass`) say little about what a model learned


def line_cases(text: str, limit: int = 16) -> list[tuple[str, str]]:
    """(the text up to a line's first character of code, the rest of that line) for up to `limit`
    code lines (not comments, at least MIN_CHARS long, not the first line), spread evenly over
    the text: always the same ones for the same text."""
    cases, start = [], 0
    for line in text.split("\n"):
        code = line.lstrip(" ")
        begin = start + len(line) - len(code)
        if start and len(code.rstrip()) >= MIN_CHARS and not code.startswith("#"):
            cases.append((text[:begin], code.rstrip()))
        start += len(line) + 1
    if len(cases) > limit:
        step = len(cases) / limit
        cases = [cases[int(i * step)] for i in range(limit)]
    return cases


def first_line(completion: str) -> str:
    return completion.split("\n", 1)[0].rstrip()


def lines_completed(model, tokenizer, cases, max_new_tokens: int = 120) -> int:
    """How many cases the default line completion finishes exactly (trailing spaces aside)."""
    right = 0
    for prefix, rest in cases:
        with COMPUTE:
            (text, _), *_ = decoding.suggest(model, tokenizer, prefix, "line", {"max_new_tokens": max_new_tokens})
        right += first_line(text) == rest
    return right
