"""Lines of the student's own code, and whether a model completes them: from the start of each
line (after its indentation), with the lines before it as context, does the demo's default
decoding write exactly the rest of the line? The line-level counterpart of names.py."""

from __future__ import annotations

from . import decoding
from .common import COMPUTE, spread

MIN_CHARS = 8  # shorter lines (`else:`, `pass`) say little about what a model learned


def line_cases(text: str, limit: int = 16, begin: int = 0, end: int | None = None) -> list[tuple[str, str]]:
    """(the text up to a line's first character of code, the rest of that line) for up to `limit`
    code lines of text[begin:end] (not comments, at least MIN_CHARS long, not the text's first
    line), spread evenly over it: always the same ones for the same text."""
    end = len(text) if end is None else end
    found, start = [], 0  # (where the line's code begins, the code): offsets, copied once chosen
    for line in text.split("\n"):
        code = line.lstrip(" ")
        if (start and begin <= start and start + len(line) <= end and len(code.rstrip()) >= MIN_CHARS
                and not code.startswith("#")):
            found.append((start + len(line) - len(code), code.rstrip()))
        start += len(line) + 1
    return [(text[:at], code) for at, code in spread(found, limit)]  # at most `limit` copies


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
