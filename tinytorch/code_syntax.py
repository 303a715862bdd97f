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

A line being written is judged as each word ends (statement_may_parse): whether what it holds
so far may still become a statement, that is, whether the parser finds nothing wrong before its
end. A beam search drops a beam that may not (`return await is `) and keeps the next one.
"""

from __future__ import annotations

import ast
import re
import warnings

from .code_layout import CLOSING, OPENING, code_of, last_statement, open_brackets

# what a clause needs before it to parse on its own
CLAUSE_BEFORE = {"elif": "if x:\n    pass\n", "else": "if x:\n    pass\n",
                 "except": "try:\n    pass\n", "finally": "try:\n    pass\n"}
FIRST_WORD = re.compile(r"[A-Za-z_]+")
# a line inside brackets opened before the prompt: a list's or dict's items, a call's arguments,
# with the bracket closed on a line of its own (the line may end in a comment), or by the line
INSIDE_BRACKETS = ("[{}\n]", "{{{}\n}}", "f({}\n)", "[{}", "{{{}", "f({}")
# the same brackets for a line cut short: (what opens them, what closes them after the line)
AROUND_A_START = (("[", "]"), ("{", "}"), ("f(", ")"))
# the characters of a token that one more character may make another (`!` of `!=`, `..` of `...`)
GROWING_OPERATORS = "!.-<>=*/&|^%+@:"
# what a parser says of a statement that wants more: an if-expression its else, `*,` its name,
# `del f(` its attribute (`del f().x`), a dict's key its value, `f(a=1, b` its default
WANTS_MORE = ("unterminated", "literal", "expected 'else'", "named arguments must follow bare *", "cannot delete",
              "expected after dictionary key", "follows default argument")


def syntax_error(source: str) -> SyntaxError | None:
    """The error ast.parse finds first in `source`, or None (it builds a tree and runs nothing)."""
    try:
        with warnings.catch_warnings():  # invalid escape sequences and the like warn, and still parse
            warnings.simplefilter("ignore")
            ast.parse(source)
    except SyntaxError as err:
        return err
    except ValueError as err:  # a NUL character: wrong from the first column
        return SyntaxError(str(err), ("<unknown>", 1, 1, source, 1, 1))
    return None


def parses(source: str) -> bool:
    """Whether ast.parse accepts `source`."""
    return syntax_error(source) is None


def statement_parses(line: str) -> bool:
    """Whether `line`, one whole statement (its indentation aside), is valid Python."""
    code = line.strip()
    if not code or code.startswith("#"):
        return True
    word = FIRST_WORD.match(code)
    word = word.group() if word else ""
    source = code
    if code_of(code).rstrip().endswith(":"):  # opens a block: give it a body
        source += "\n    pass"
    if word == "try":  # and a try its handler (`try: x = int(s)` has its body)
        source += "\nexcept Exception:\n    pass"
    if word == "match" and source != code:  # and a match its case
        source = code + "\n    case _:\n        pass"
    if code.startswith("@"):
        source += "\ndef decorated():\n    pass"
    if parses(CLAUSE_BEFORE.get(word, "") + source):
        return True
    if word == "case":  # a match statement's clause (or a name: `case.run()` parsed above)
        return parses("match x:\n" + "\n".join("    " + piece for piece in source.split("\n")))
    return source == code and any(parses(inside.format(code)) for inside in INSIDE_BRACKETS)


def first_unparsable_line(lines, before=None, joined: bool = False) -> int | None:
    """The index of the first of `lines` that holds a whole statement and does not parse, or that
    starts one that goes on (inside brackets) and cannot parse whatever follows; else None.
    before: the Statement the lines before them left (code_layout.last_statement), None at a
    statement's start; joined: whether the line before them ended in a backslash, which joins
    the first to it."""
    for i, line in enumerate(lines):
        after = last_statement([line], before)
        starts = (before is None or not before.continues) and not joined
        goes_on = after is not None and after.continues
        joined = line.rstrip().endswith("\\")
        if starts and not joined:
            if not (statement_may_parse(line, line_ended=True) if goes_on else statement_parses(line)):
                return i
        before = after
    return None


def statement_may_parse(line: str, line_ended: bool = False) -> bool:
    """Whether some text after `line`, the start of a statement cut between words, could make it
    valid Python: the parser finds nothing wrong before the line's end. `return a if ` may still
    become right; `return await is ` never will (`is` cannot follow `await`). A string or number
    not finished yet, and brackets left open (closed for the check), are what a line cut short
    has. The operator characters it ends with may be half a token (`..` of `...`, `:` of `:=`),
    so it is also judged without them, unless a space or the end of its line has come after
    them (line_ended: the statement goes on on the next line, inside brackets): so
    `[n for n in xs if n:` is refused once its line ends. Of 930,000 such cuts of real code
    (benchmarks/syntax_rule.py) none is refused."""
    token_done = line_ended or line[-1:].isspace()  # `x =` may become `x ==`, `x = ` may not
    code = line.strip()
    code = code[:len(code_of(code))].rstrip()  # its comment, if any, cannot make it wrong
    if not code or code.startswith("@"):  # a decorator needs the def after it: left unchecked
        return True
    word = FIRST_WORD.match(code)
    word = word.group() if word else ""
    if word == "case":  # a match statement's clause, or a name: rare, left unchecked
        return True
    typed = code.rstrip(GROWING_OPERATORS)  # without an operator that may be half typed (`..` of `...`)
    candidates = (code,) if token_done or typed == code else (code, typed)
    return any(_nothing_wrong_before_end(before, candidate, after)
               for candidate in candidates
               for before, after in ((CLAUSE_BEFORE.get(word, ""), ""), *AROUND_A_START))


def _nothing_wrong_before_end(before: str, code: str, after: str) -> bool:
    """Whether ast.parse finds the first error of before + code + after no earlier than the end
    of `code`: a statement cut short, not a wrong one. Brackets `code` leaves open are closed,
    right after it or after a name (`f(a, *,` is right, `f(a, *,)` is not; `s[x]` but not `s[]`)."""
    masked = code_of(code)
    closers = "".join(CLOSING[OPENING.index(masked[column])] for column in reversed(open_brackets(masked)))
    endings = ("", "x") if closers else ("",)
    return any(_error_at_end(before, code, ending + closers + after) for ending in endings)


def _error_at_end(before: str, code: str, after: str) -> bool:
    """Whether before + code + after parses, or its first error comes at the end of `code` or later."""
    err = syntax_error(before + code + after)
    if err is None or any(phrase in err.msg for phrase in WANTS_MORE):
        return True
    line = before.count("\n") + 1  # the line `code` is on; its end, 1-based, one past its last character:
    end = len(before) - (before.rfind("\n") + 1) + len(code) + 1
    if err.lineno is None or err.offset is None or err.lineno < line:
        return False  # (a NUL character has no place)
    if err.lineno > line:
        return True  # what comes after the line (a block's body) is missing
    return err.offset >= end or ("expected" in err.msg and (err.end_offset or 0) >= end)
