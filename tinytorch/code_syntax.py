"""Whether the lines a completion finishes are Python at all: `return await is not None:` has no
run of spaces, no loop and no repeat, and still no editor would offer it.

A line is judged when it holds a whole statement: it does not continue a statement from the
lines before (inside brackets or a string) and leaves nothing open for the next one. Such a line
is parsed on its own (ast.parse, which builds a tree and runs no code), with what it needs around
it to stand alone: a body after a line that opens a block (`def f(x):`), the `if` before an
`elif`, the `try` before an `except`, the function after a decorator. Parsing checks the grammar
only: `return` outside a function or an unknown name passes, as it may be right in the file.

Approximate as code_layout is: a prompt is the last few hundred characters before the cursor, so
brackets may have opened before it (a dict's entries, `0x00d2: 0x2565,`, a call's arguments): a
line that parses as the inside of a bracket passes too. A line inside a docstring opened before
the prompt reads as code, and prose fails to parse there.
"""

from __future__ import annotations

import ast
import re
import warnings

from .code_layout import code_of, last_statement

# what a clause needs before it to parse on its own
CLAUSE_BEFORE = {"elif": "if x:\n    pass\n", "else": "if x:\n    pass\n",
                 "except": "try:\n    pass\n", "finally": "try:\n    pass\n"}
FIRST_WORD = re.compile(r"[A-Za-z_]+")
# a line inside brackets opened before the prompt: a list's or dict's items, a call's arguments,
# with the bracket closed on a line of its own (the line may end in a comment), or by the line
INSIDE_BRACKETS = ("[{}\n]", "{{{}\n}}", "f({}\n)", "[{}", "{{{}", "f({}")


def parses(source: str) -> bool:
    """Whether ast.parse accepts `source` (it builds a tree and runs nothing)."""
    try:
        with warnings.catch_warnings():  # invalid escape sequences and the like warn, and still parse
            warnings.simplefilter("ignore")
            ast.parse(source)
    except (SyntaxError, ValueError):  # ValueError: a NUL character
        return False
    return True


def statement_parses(line: str) -> bool:
    """Whether `line`, one whole statement (its indentation aside), is valid Python."""
    code = line.strip()
    if not code or code.startswith("#"):
        return True
    source = code
    if code_of(code).rstrip().endswith(":"):  # opens a block: give it a body
        source += "\n    pass"
    if code.startswith("@"):
        source += "\ndef decorated():\n    pass"
    word = FIRST_WORD.match(code)
    word = word.group() if word else ""
    if word == "case":
        source = "match x:\n" + "\n".join("    " + piece for piece in source.split("\n"))
    if parses(CLAUSE_BEFORE.get(word, "") + source):
        return True
    return source == code and any(parses(inside.format(code)) for inside in INSIDE_BRACKETS)


def first_unparsable_line(lines, before=None) -> int | None:
    """The index of the first of `lines` that holds a whole statement and does not parse, or None.
    before: the Statement the lines before them left (code_layout.last_statement), None at a
    statement's start."""
    for i, line in enumerate(lines):
        after = last_statement([line], before)
        whole = (before is None or not before.continues) and (after is None or not after.continues)
        if whole and not line.rstrip().endswith("\\") and not statement_parses(line):
            return i
        before = after
    return None
