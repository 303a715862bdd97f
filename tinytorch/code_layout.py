"""How Python source is laid out, read the way a code editor reads the text before its cursor:
identifier characters, a line's indentation, its code (strings and comment left out), the
brackets it leaves open, the indent unit a file uses and the level a block is written at.

Approximate by design: a prompt is the last few hundred characters before the cursor, so a line
that lies inside a docstring is read as code; every rule that uses these readings allows more
where the reading is unsure (inside open brackets, any indentation).
"""

from __future__ import annotations

import string
from collections import Counter
from dataclasses import dataclass

IDENTIFIER_CHARS = frozenset(string.ascii_letters + string.digits + "_")
DEFAULT_INDENT_UNIT = 4  # PEP 8's, and the standard library's
OPENING, CLOSING = "([{", ")]}"
LINES_READ = 60  # a prompt's last lines hold its indent unit and the statement before the cursor


def last_lines(text: str, count: int = LINES_READ) -> list:
    """The text's last `count` lines and the (maybe partial) line after them: what the readings
    below look at, so that their cost does not grow with the prompt."""
    return text.rsplit("\n", count + 1)[-count - 1:]  # the first piece of count + 1 splits holds the rest


def indent_of(line: str) -> int:
    """Spaces before the line's first other character (all of them for a blank line)."""
    return len(line) - len(line.lstrip(" "))


def code_of(line: str) -> str:
    """The line without its comment, each string literal's contents replaced by '_' so that every
    column stays where it was: what brackets and a closing ':' are read from. A string left open
    runs to the end of the line (the line is read on its own)."""
    return _scan(line)[0]


def _scan(line: str) -> tuple:
    """(code_of(line), the triple quote of a string the line leaves open, or None)."""
    out, i, n, left_open = [], 0, len(line), None
    while i < n:
        c = line[i]
        if c == "#":
            break
        if c in "'\"":
            quote = line[i:i + 3] if line[i:i + 3] in ('"""', "'''") else c
            j = i + len(quote)
            while j < n and not line.startswith(quote, j):
                j += 2 if line[j] == "\\" else 1
            j = min(j, n)
            end = j + len(quote) if j < n else n
            out.append(quote + "_" * (j - i - len(quote)) + line[j:end])
            left_open = quote if j >= n and len(quote) == 3 else None
            i = end
            continue
        out.append(c)
        i += 1
    return "".join(out), left_open


def open_brackets(code: str, stack: tuple = ()) -> tuple:
    """The columns of the brackets still open after `code` (from code_of), innermost last,
    continuing from the `stack` the lines before left open."""
    columns = list(stack)
    for column, c in enumerate(code):
        if c in OPENING:
            columns.append(column)
        elif c in CLOSING and columns:
            columns.pop()
    return tuple(columns)


@dataclass(frozen=True)
class Statement:
    """What the next line's indentation depends on, read from the lines up to the last one with
    code: the indentation its statement started at, whether it opened a block (ends with ':'
    outside brackets), the columns of the brackets it leaves open (innermost last), and the
    triple quote of a string it leaves open (a docstring being written), or None."""

    indent: int
    opens_block: bool
    brackets: tuple
    open_string: str | None = None

    @property
    def continues(self) -> bool:
        """Whether the next line continues this statement (inside brackets or a string)."""
        return bool(self.brackets or self.open_string)


def last_statement(lines, start: Statement | None = None) -> Statement | None:
    """The Statement after `lines` (None when none of them holds code), continuing from `start`
    (what the lines before them left)."""
    found = start
    for line in lines:
        if found is not None and found.open_string:  # inside a string: only its end matters
            close = line.find(found.open_string)
            if close < 0:
                continue
            found = Statement(found.indent, False, found.brackets)
            line = " " * (close + 3) + line[close + 3:]  # what follows the string, columns kept
        if not line.strip():
            continue
        code, left_open = _scan(line)
        if not code.strip():  # a comment line changes nothing, unless nothing came before it
            found = found or Statement(indent_of(line), False, ())
            continue
        inside = found is not None and found.continues
        brackets = open_brackets(code, found.brackets if inside else ())
        indent = found.indent if inside else indent_of(line)  # a continuation line keeps its statement's
        found = Statement(indent, not brackets and not left_open and code.rstrip().endswith(":"), brackets,
                          left_open)
    return found


def indent_unit(lines) -> int:
    """The indentation a block adds in these lines: the commonest step from a line that opens a
    block to the deeper line after it (the smaller on a tie), DEFAULT_INDENT_UNIT when none shows."""
    steps, before = Counter(), None
    for line in lines:
        if not line.strip():
            continue
        if before is not None and before.opens_block and indent_of(line) > before.indent:
            steps[indent_of(line) - before.indent] += 1
        before = last_statement([line], before)
    if not steps:
        return DEFAULT_INDENT_UNIT
    return min(steps, key=lambda step: (-steps[step], step))


def block_level(prompt: str, unit: int) -> int:
    """The indentation of the block a completion of `prompt` writes: the prompt's last line's
    indentation, one unit deeper when that line opens a block (`def f(x):`). When the prompt
    ends at the start of an empty line, the same is read from the last line with code."""
    lines = last_lines(prompt)
    if lines[-1] or len(lines) == 1:
        last = lines[-1]
        if not last.strip():  # the cursor after indentation: that is the level
            return len(last)
    else:
        last = next((line for line in reversed(lines) if line.strip()), "")
    statement = last_statement([last])
    if statement is None:
        return 0
    return statement.indent + (unit if statement.opens_block else 0)
