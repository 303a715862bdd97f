"""The student's own names in a training text, the prompts that show them off, and the test of
whether a model completes them: type the first 3 characters, does greedy decoding finish it?"""

from __future__ import annotations

import bisect
import io
import re
import tokenize
from collections import Counter

from .common import COMPUTE, spread

# def/class names and module-level UPPER_CASE constants: what a file defines for itself.
# [ \t]*, not \s*: \s would run across blank lines from every line start (quadratic in them).
DEFINED = re.compile(r"^[ \t]*(?:def|class)[ \t]+([A-Za-z_]\w{3,})|^([A-Z][A-Z0-9_]{3,})[ \t]*=", re.M)
# A name used as itself: not an attribute (no "." before it), not the tail of another word.
USE = re.compile(r"(?<![\w.])[A-Za-z_]\w*")
TYPED = 3  # characters the student has typed before the model takes over

# Every function here makes a fixed number of passes over the text (a regex scan, Python's
# tokenizer) and then looks things up: the work is linear in the text, whatever it holds.


def own_names(text: str) -> list[str]:
    """Names the text defines (helpers, classes, constants), most used first."""
    defined = {m.group(1) or m.group(2) for m in DEFINED.finditer(text)}
    defined -= {"main", "__init__", "__repr__"}
    uses = Counter(m.group() for m in re.finditer(r"[A-Za-z_]\w*", text) if m.group() in defined)
    return [name for name, _ in sorted(uses.items(), key=lambda kv: (-kv[1], kv[0]))]


def occurrences_of(text: str, names) -> dict[str, list[int]]:
    """{name: start offsets of its uses as itself}, for all `names` in one scan."""
    names, found = set(names), {}
    for m in USE.finditer(text):
        if m.group() in names:
            found.setdefault(m.group(), []).append(m.start())
    return found


def completion_cases(text: str, limit: int = 24, begin: int = 0, end: int | None = None) -> list[tuple[str, str]]:
    """(text up to and including the first 3 characters of an own name, the rest of the name),
    for up to `limit` occurrences spread over text[begin:end] (always the same ones for the same
    text); the names are those the whole text defines, the context all the text before each."""
    end = len(text) if end is None else end
    cases = spread(sorted((start, name) for name, starts in occurrences_of(text, own_names(text)).items()
                          for start in starts if begin <= start and start + len(name) <= end), limit)
    return [(text[:start + TYPED], name[TYPED:]) for start, name in cases]  # at most `limit` copies


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
    lines = Lines(text)
    ranked = own_names(text)
    found = occurrences_of(text, ranked)
    for name in ranked:
        spots = []
        for start in found.get(name, ()):
            line = lines.number(start)
            if in_string_or_comment(start) if in_string_or_comment else lines.marked_before(line, start):
                continue
            spots.append((lines.rank(line, start), start, lines.starts[line]))
        if not spots:
            continue
        _, start, line_start = min(spots)
        previous = text[:line_start].rstrip("\n")
        previous = previous[previous.rfind("\n") + 1:]  # the last non-blank line before it
        prompts.append((previous + "\n" if previous.strip() else "") + text[line_start:start + TYPED])
        if len(prompts) == count:
            break
    return prompts


class Lines:
    """For each line of a text: where it starts, where its indentation ends, where the name after
    a leading def/class starts, and where its first '#', '"' or "'" is. One pass over the text;
    then each question about an offset is a binary search."""

    def __init__(self, text: str):
        self.starts, self.indent_ends, self.defined_at, self.first_marks = [], [], [], []
        offset = 0
        for line in text.split("\n"):
            indent_end = offset + len(line) - len(line.lstrip())
            keyword = re.match(r"(?:def|class)[ \t]+", line[indent_end - offset:indent_end - offset + 64])
            marks = [i for i in (line.find("#"), line.find('"'), line.find("'")) if i >= 0]
            self.starts.append(offset)
            self.indent_ends.append(indent_end)
            self.defined_at.append(indent_end + keyword.end() if keyword else None)
            self.first_marks.append(offset + min(marks) if marks else None)
            offset += len(line) + 1

    def number(self, offset: int) -> int:
        return bisect.bisect_right(self.starts, offset) - 1

    def marked_before(self, line: int, offset: int) -> bool:
        """A '#', '"' or "'" earlier on the line: the crude test for being in a string or comment."""
        mark = self.first_marks[line]
        return mark is not None and mark < offset

    def rank(self, line: int, offset: int) -> int:
        """0: inside an expression; 1: a statement starts with it; 2: the name a def/class defines."""
        return 2 if offset == self.defined_at[line] else 1 if offset <= self.indent_ends[line] else 0


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
    starts = [a for a, _ in spans]  # tokens come in order and never overlap

    def inside(offset: int) -> bool:
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and offset < spans[i][1]
    return inside


SEPARATOR = "\n---\n"


def parse_prompts(text: str) -> list[str]:
    """Prompts written one after another, separated by lines holding only '---'."""
    chunks = re.split(r"\n-{3,}[ \t]*(?:\n|$)", "\n" + (text or "") + "\n")
    return [c.strip("\n") for c in chunks if c.strip()]


def format_prompts(prompts: list[str]) -> str:
    return SEPARATOR.join(prompts)
