"""What a student calls a broken suggestion: one definition, for the benchmarks, the tests and
the demo.

A suggestion is broken when it is only whitespace; starts with whitespace where the prompt
already ends in a line's indentation; holds a run of BROKEN_SPACE_RUN or more spaces after a
line's first other character (on the page: a blank-looking stretch, or a bar that runs off the
panel), unless the run aligns a comment with a comment of a line before (`x = 1      # why`
under `y = 22     # how`: three quarters of the standard library's inline comments are aligned
so); loops (a piece of 3 or more characters with two different ones that are not spaces, 3
times running: `self.__init__()self.__init__()self.__init__()`, not `# ------`); repeats the
line before it; or, completing a line or a block, was cut by the length cap before its end (no
newline), or finishes a line holding a whole statement that is not Python (tinytorch.code_syntax:
`return await is not None:`). tinytorch.code_constraints keeps decoding away from each of these.
"""

from __future__ import annotations

import re

from .code_layout import code_of, indent_of, last_lines, last_statement
from .code_syntax import first_unparsable_line

BROKEN_SPACE_RUN = 4  # after a line's first other character; code has 1 (benchmarks/README.md)
MIN_LOOP_UNIT = 3
REASONS = ("blank", "leading whitespace", "space run", "loop", "repeat", "cut", "syntax")


def repeats_line_before(line: str, before: str) -> bool:
    """Whether `line` holds code and says what the line before it says (indentation aside)."""
    code = line.strip()
    return bool(code) and code == before.strip()


def ends_in_loop(text: str) -> bool:
    """Whether `text` ends with a piece of MIN_LOOP_UNIT or more characters, two of them different
    and not spaces, three times running."""
    for unit in range(MIN_LOOP_UNIT, len(text) // 3 + 1):
        piece = text[-unit:]
        if text[-2 * unit:-unit] == piece == text[-3 * unit:-2 * unit] and len(set(piece) - {" "}) > 1:
            return True
    return False


def loop_endings(text: str) -> set:
    """The characters c for which text + c ends in a loop (ends_in_loop), found without trying each."""
    found = set()
    for unit in range(MIN_LOOP_UNIT, (len(text) + 1) // 3 + 1):
        c = text[-unit]  # the loop's last character repeats the one a unit back, and two units back
        if c != text[-2 * unit] or c in found:
            continue
        tail = text[-3 * unit + 1:] + c
        piece = tail[-unit:]
        if tail[:unit] == tail[unit:2 * unit] == piece and len(set(piece) - {" "}) > 1:
            found.add(c)
    return found


def loops(text: str) -> bool:
    """Whether a loop (ends_in_loop) ends anywhere in `text`."""
    return any(ends_in_loop(text[:end]) for end in range(3 * MIN_LOOP_UNIT, len(text) + 1))


def comment_columns(lines) -> set:
    """The columns where the inline comments of `lines` start (comments after code)."""
    found = set()
    for line in lines:
        code = code_of(line)
        if code.strip() and line.startswith("#", len(code)):
            found.add(len(code))
    return found


def longest_space_run(line: str, start: int = 0, aligned=frozenset()) -> int:
    """The longest run of spaces in `line` after its first other character that ends at or after
    column `start`, leaving out runs that lead to a comment at one of the `aligned` columns (0 for
    a line with no such run)."""
    first = indent_of(line)
    longest = 0
    for m in re.finditer(r" +", line):
        if m.start() > first and m.end() > start and not (m.end() in aligned and line.startswith("#", m.end())):
            longest = max(longest, len(m.group()))
    return longest


def why_broken(prompt: str, completion: str, mode: str = "line") -> str | None:
    """Why `completion` of `prompt` is a broken suggestion (one of REASONS), or None.

    mode: "line" or "block" (finished completions end with a newline: one without was cut by
    the cap), anything else (a word, free text) is not judged on that. Only what the completion
    wrote counts: the prompt's own lines are the student's.
    """
    if not completion.strip():
        return "blank"
    last = prompt[prompt.rfind("\n") + 1:]  # the prompt's part of the completion's first line
    if last and not last.strip(" ") and completion[0].isspace():
        return "leading whitespace"
    lines = (last + completion).split("\n")
    aligned = comment_columns(last_lines(prompt)[:-1])
    for i, line in enumerate(lines):
        if longest_space_run(line, len(last) if i == 0 else 0, aligned) >= BROKEN_SPACE_RUN:
            return "space run"
        aligned |= comment_columns([line])
    if loops(completion):
        return "loop"
    before = prompt.split("\n")[-2] if "\n" in prompt else ""
    for line in lines:
        if repeats_line_before(line, before):
            return "repeat"
        before = line
    if mode in ("line", "block"):
        if not completion.endswith("\n"):
            return "cut"
        if first_unparsable_line(lines[:-1], last_statement(last_lines(prompt)[:-1])) is not None:
            return "syntax"
    return None
