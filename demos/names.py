"""The student's own names in a training text, the prompts that show them off, and the test of
whether a model completes them: type the first 3 characters, does greedy decoding finish it?"""

from __future__ import annotations

import io
import re
import tokenize
from collections import Counter

from .common import COMPUTE

# def/class names and module-level UPPER_CASE constants: what a file defines for itself.
DEFINED = re.compile(r"^\s*(?:def|class)\s+([A-Za-z_]\w{3,})|^([A-Z][A-Z0-9_]{3,})\s*=", re.M)
TYPED = 3  # characters the student has typed before the model takes over


def own_names(text: str) -> list[str]:
    """Names the text defines (helpers, classes, constants), most used first."""
    defined = {m.group(1) or m.group(2) for m in DEFINED.finditer(text)}
    defined -= {"main", "__init__", "__repr__"}
    uses = Counter(m.group() for m in re.finditer(r"[A-Za-z_]\w*", text) if m.group() in defined)
    return [name for name, _ in sorted(uses.items(), key=lambda kv: (-kv[1], kv[0]))]


def occurrences(text: str, name: str) -> list[int]:
    return [m.start() for m in re.finditer(rf"(?<![\w.]){re.escape(name)}(?!\w)", text)]


def completion_cases(text: str, limit: int = 24) -> list[tuple[str, str]]:
    """(text up to and including the first 3 characters of an own name, the rest of the name),
    for up to `limit` occurrences spread over the text (always the same ones for the same text)."""
    cases = []
    for name in own_names(text):
        for start in occurrences(text, name):
            cases.append((start, text[:start + TYPED], name[TYPED:]))
    cases.sort()
    if len(cases) > limit:
        step = len(cases) / limit
        cases = [cases[int(i * step)] for i in range(limit)]
    return [(prefix, rest) for _, prefix, rest in cases]


def names_completed(model, tokenizer, cases) -> int:
    """How many cases greedy decoding completes exactly."""
    right = 0
    window = model.config.n_positions
    for prefix, rest in cases:
        ids = tokenizer.encode(prefix)[-window:]
        with COMPUTE:
            out = model.generate(ids, len(rest), temperature=0.0)
        right += tokenizer.decode(out[len(ids):]) == rest
    return right


def default_prompts(text: str, count: int = 4) -> list[str]:
    """Prompts that end 3 characters into one of the text's own names, with the line before as
    context: where a model that learned the text should finish the name. Uses in code come
    first (a call inside an expression, then a statement, then a definition); mentions inside
    strings and comments are skipped."""
    prompts = []
    in_string_or_comment = prose_test(text)
    for name in own_names(text):
        spots = []
        for start in occurrences(text, name):
            line_start = text.rfind("\n", 0, start) + 1
            head = text[line_start:start]
            if in_string_or_comment(start) if in_string_or_comment else any(m in head for m in "#\"'"):
                continue
            rank = 2 if head.strip() in ("def", "class") else 1 if not head.strip() else 0
            spots.append((rank, start, line_start))
        if not spots:
            continue
        _, start, line_start = min(spots)
        previous = text[:line_start].rstrip("\n")
        previous = previous[previous.rfind("\n") + 1:]  # the last non-blank line before it
        prompts.append((previous + "\n" if previous.strip() else "") + text[line_start:start + TYPED])
        if len(prompts) == count:
            break
    return prompts


def prose_test(text: str):
    """A function telling whether a character offset lies in a string or a comment, from Python's
    own tokenizer; None when the text does not tokenize (pasted fragments), for a cruder test."""
    line_offsets = [0]
    for line in text.splitlines(keepends=True):
        line_offsets.append(line_offsets[-1] + len(line))
    spans = []
    try:
        for token in tokenize.generate_tokens(io.StringIO(text).readline):
            if token.type in (tokenize.STRING, tokenize.COMMENT):
                (r0, c0), (r1, c1) = token.start, token.end
                spans.append((line_offsets[r0 - 1] + c0, line_offsets[r1 - 1] + c1))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        return None
    return lambda offset: any(a <= offset < b for a, b in spans)


SEPARATOR = "\n---\n"


def parse_prompts(text: str) -> list[str]:
    """Prompts written one after another, separated by lines holding only '---'."""
    chunks = re.split(r"\n-{3,}[ \t]*(?:\n|$)", "\n" + (text or "") + "\n")
    return [c.strip("\n") for c in chunks if c.strip()]


def format_prompts(prompts: list[str]) -> str:
    return SEPARATOR.join(prompts)
