"""What a code editor never suggests, kept out of decoding: rules that greedy decoding, sampling
and beam search all apply through one object (`Rules`), the way transformers keeps its
LogitsProcessors beside generation.

With the constraints on (CodeConstraints; the completion modes of tinytorch.completion turn them
on, plain sampling leaves them off), a completion
- does not start with whitespace when the prompt ends in a line's indentation (the student has
  put the cursor where the code goes);
- writes no run of more than MAX_SPACE_RUN spaces after a line's first other character, but to
  align a comment with the comment of a line before (a longer run may only lead to a `#` at a
  column where the prompt's last lines start one), and no space directly before a newline;
- indents each new line as the line before allows: one unit deeper after a line that opens a
  block (`def f(x):`), at the same level or a whole number of units less otherwise, anything up
  to two units deeper than its statement (or its innermost open bracket) inside brackets left
  open; in block mode a line less indented than the block ends it (tinytorch.stopping), but
  not while brackets or a docstring are open, or right after a line that opens a block;
- never ends in a loop (a piece of 3 or more characters three times running);
- ends where a line repeats the line before it (that line is not kept);
- in block mode, is only offered when it leaves no bracket or docstring open;
- in line and block mode, is only offered when each line it finishes that holds a whole
  statement parses as Python (tinytorch.code_syntax): not `return await is not None:`; and it
  stops growing once the statement it writes cannot parse whatever follows (`return await is `,
  at its space), so that a beam search spends its beams on lines that still may;
- is offered only when it reached its stop (the end of the line, the block, the word): one that
  max_new_tokens cut off is dropped, and the next best is offered instead; when none finishes
  there is no suggestion;
- is one suggestion with every completion that differs from it only in whitespace (the best
  scored stays), so that `)` and `)` followed by spaces are not listed twice.
The first four ban next characters (their logits become -inf); the others decide which growing
and finished completions count. Each rule keeps away one kind of broken suggestion (tinytorch.suggestion_checks).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .code_layout import block_level, indent_unit, last_lines, last_statement
from .code_syntax import first_unparsable_line, statement_may_parse
from .suggestion_checks import BROKEN_SPACE_RUN, comment_columns, loop_endings, repeats_line_before

# Runs of spaces after a line's first other character in the standard library (tokenize's gaps,
# benchmarks/README.md): between code tokens 1 in 99.4% of the lines that have one; before an
# inline comment 2 (PEP 8) or 3 in a quarter of them, 4+ for the comments aligned to a column.
# The longest run allowed before code is one short of what a student calls broken.
MAX_SPACE_RUN = BROKEN_SPACE_RUN - 1


@dataclass(frozen=True)
class CodeConstraints:
    """Which of the rules are on (all, by default). max_space_run 0 allows any run."""

    no_leading_whitespace: bool = True
    max_space_run: int = MAX_SPACE_RUN
    no_trailing_whitespace: bool = True
    indentation: bool = True
    no_loops: bool = True
    repeated_line_ends: bool = True
    finished_only: bool = True
    parses: bool = True
    merge_whitespace_variants: bool = True

    @classmethod
    def of(cls, value) -> "CodeConstraints | None":
        """generate()'s `constraints` argument as CodeConstraints: None or False (off), True (all
        on), or CodeConstraints; a ValueError otherwise."""
        if value is None or value is False:
            return None
        if value is True:
            return cls()
        if isinstance(value, cls):
            if not isinstance(value.max_space_run, int) or value.max_space_run < 0:
                raise ValueError(f"max_space_run must be an integer >= 0 (0 = any run), got {value.max_space_run!r}")
            return value
        raise ValueError(f"constraints must be True, False, None or a CodeConstraints, got {value!r:.60}")


class CharClasses:
    """Which ids are a space, a newline, or anything else: boolean masks (V,) over the vocabulary.
    chars: each id's character."""

    def __init__(self, chars):
        self.space = np.array([c == " " for c in chars])
        self.newline = np.array([c == "\n" for c in chars])
        self.comment = np.array([c == "#" for c in chars])
        self.other = ~(self.space | self.newline)
        self.ids = {}  # character -> its ids
        for i, c in enumerate(chars):
            self.ids.setdefault(c, []).append(i)


def whitespace_key(text: str) -> tuple:
    """What a completion says with whitespace left out, but for each later line's indentation:
    completions with the same key differ only in whitespace that does not change the code."""
    first, *rest = text.split("\n")
    return ("".join(first.split()),) + tuple((len(line) - len(line.lstrip(" ")), "".join(line.split()))
                                            for line in rest if line.strip())


class Rules:
    """The rules of one completion: its stop condition (tinytorch.stopping.StopCondition), and the
    code constraints when they are on. Both decoders ask the same questions of it: which next
    ids are banned (`ban`), has the completion ended (`end`), what happens to one the cap cut off
    (`at_cap`), and is a finished one offered, under which key (`offered`, `key`); beam search
    also asks whether a growing one may go on (`may_grow`).

    prompt_text: the prompt's text; chars: each id's character (None when nothing reads text);
    classes: CharClasses of chars, when the caller has them already.
    """

    def __init__(self, stopper, prompt_text: str, chars=None, constraints: CodeConstraints | None = None,
                 classes: CharClasses | None = None):
        self.stopper, self.on, self.prompt = stopper, constraints, prompt_text
        cut = prompt_text.rfind("\n")
        self.prompt_line = prompt_text[cut + 1:]  # the part of the completion's first line typed already
        self.line_before = prompt_text[prompt_text.rfind("\n", 0, max(cut, 0)) + 1:cut] if cut >= 0 else ""
        self.at_indentation = bool(self.prompt_line) and not self.prompt_line.strip(" ")
        self.joined = self.line_before.rstrip().endswith("\\")  # the prompt's line continues the one before
        self.classes = classes if classes is not None or constraints is None else CharClasses(chars)
        self.checks_syntax = constraints is not None and constraints.parses and stopper.mode in ("line", "block")
        self._layout = self._comments = self._prompt_line_may_parse = None

    # ------------------------------------------------------------------ banned next ids
    def ban(self, logits: np.ndarray, text: str) -> np.ndarray:
        """logits (V,) after completion `text` -> the same array with -inf at every banned id."""
        banned = self.banned(text)
        if banned is not None:
            logits[banned] = -np.inf
        return logits

    def banned(self, text: str) -> np.ndarray | None:
        """The ids that may not come next after completion `text`: a boolean mask (V,), or None
        when none is banned."""
        if self.on is None:
            return None
        banned = self._whitespace_bans(text)
        ending = loop_endings(text) if self.on.no_loops else ()
        if ending:
            banned = np.zeros_like(self.classes.space) if banned is None else banned.copy()
            for c in ending:
                banned[self.classes.ids.get(c, [])] = True
        return banned

    def _whitespace_bans(self, text: str) -> np.ndarray | None:
        """The leading, trailing, run-of-spaces and indentation rules' bans (see banned)."""
        on, classes = self.on, self.classes
        if not text and self.at_indentation and on.no_leading_whitespace:
            return classes.space | classes.newline
        newline = text.rfind("\n")
        line = text[newline + 1:] if newline >= 0 else self.prompt_line + text
        if not line.strip(" ") and on.indentation and (newline >= 0 or not self.prompt_line):
            return self._indentation_bans(text, newline, len(line))  # an indentation the completion writes
        trailing = on.no_trailing_whitespace and line.endswith(" ")
        # the run of spaces the line ends in, once the completion has written some of it (the
        # student's own run is theirs)
        run = len(line) - len(line.rstrip(" ")) if on.max_space_run and text.endswith(" ") and line.strip(" ") else 0
        if run >= on.max_space_run > 0:  # a longer run may only lead to an aligned comment
            banned = classes.newline.copy() if trailing else np.zeros_like(classes.space)
            if not any(column > len(line) for column in self.comment_columns):
                banned |= classes.space
            if run > on.max_space_run:
                banned |= classes.other if len(line) not in self.comment_columns else classes.other & ~classes.comment
            return banned
        return classes.newline if trailing else None

    @property
    def comment_columns(self) -> set:
        """Where the inline comments of the prompt's last lines start (read once)."""
        if self._comments is None:  # (none to align with when the vocabulary has no '#')
            self._comments = comment_columns(last_lines(self.prompt)[:-1]) if self.classes.comment.any() else set()
        return self._comments

    def _layout_of_prompt(self):
        """(indent unit, block level, the Statement after the prompt's lines before its last)."""
        if self._layout is None:
            lines = last_lines(self.prompt)
            unit = indent_unit(lines[:-1])
            level = getattr(self.stopper, "level", None)
            self._layout = (unit, block_level(self.prompt, unit) if level is None else level,
                            last_statement(lines[:-1]))
        return self._layout

    def _indentation_bans(self, text: str, newline: int, n: int) -> np.ndarray | None:
        """Bans for the next id of a line whose n spaces so far the completion wrote: spaces once
        no allowed indentation lies deeper, anything else unless n is allowed, a newline unless
        the line is empty (a blank line with spaces is trailing whitespace)."""
        unit, level, statement = self._layout_of_prompt()
        if newline >= 0:
            statement = last_statement((self.prompt_line + text[:newline]).split("\n"), statement)
        if statement is None:
            return None
        block = self.stopper.mode == "block"
        if statement.continues:  # inside brackets or a string: a hanging indent, or under the bracket
            under = statement.brackets[-1] + 1 if statement.brackets else 0
            deepest = max(statement.indent + 2 * unit, under)
            lowest = min(level, deepest) if block else 0  # a block does not end inside them

            def allowed(m):
                return lowest <= m <= deepest
        elif statement.opens_block:
            deepest = statement.indent + unit

            def allowed(m):
                return m == deepest
        else:
            deepest = statement.indent

            def allowed(m):
                return m <= deepest and (deepest - m) % unit == 0
        # a line less indented than the block ends it, but not inside brackets, nor right after a
        # line that opens a block: neither leaves code that runs
        ends = block and not statement.continues and not statement.opens_block
        if ends:
            deepest = max(deepest, level - 1)
            inner = allowed

            def allowed(m):
                return m < level or inner(m)
        classes = self.classes
        banned = np.zeros_like(classes.space)
        if not any(allowed(m) for m in range(n + 1, deepest + 1)):
            banned |= classes.space
        if not allowed(n):
            banned |= classes.other
        if (n and (self.on.no_trailing_whitespace or not allowed(n))) or (block and not ends):
            banned |= classes.newline  # (a blank line would end the block there)
        return banned if banned.any() else None

    # ------------------------------------------------------------------ ends, the cap, what is offered
    def end(self, ids: list, new: int, text: str) -> int | None:
        """How many of the completion's `new` ids to keep once it has ended, else None: the stop
        condition's answer, or the start of a line that repeats the line before it."""
        keep = self.stopper(ids, new, text)
        if self.on is not None and self.on.repeated_line_ends and text.endswith("\n"):
            start = text.rfind("\n", 0, len(text) - 1) + 1  # of the line the newline ended
            if start:
                line = text[start:-1]
                head = self.prompt_line + text[:start - 1]
                before = head[head.rfind("\n") + 1:]
            else:
                line, before = self.prompt_line + text[:-1], self.line_before
            if repeats_line_before(line, before):
                keep = start if keep is None else min(keep, start)
        return keep

    def may_grow(self, text: str) -> bool:
        """Whether a completion `text` that has not ended may go on, as a word ends in it: not once
        the statement its last line starts can no longer parse (code_syntax.statement_may_parse:
        `return await is ` is refused at its space, and the next beam takes its place). A
        statement the prompt's own line has got wrong already is not the completion's to judge."""
        if not self.checks_syntax or not text or text[-1].isalnum() or text[-1] in "_\n":
            return True
        lines = (self.prompt_line + text).split("\n")
        line = lines.pop()  # the line being written; `lines`, those the completion finished
        if not lines:  # still the prompt's line
            if self._prompt_line_may_parse is None:
                self._prompt_line_may_parse = self.joined or statement_may_parse(self.prompt_line)
            if not self._prompt_line_may_parse:
                return True
        if (lines[-1] if lines else self.line_before).rstrip().endswith("\\"):
            return True  # a line a backslash joins to the one before
        before = last_statement(lines, self._layout_of_prompt()[2])
        return (before is not None and before.continues) or statement_may_parse(line)

    @property
    def finished_only(self) -> bool:
        """Whether only completions that reached their stop are offered (there is a stop, and the rule is on)."""
        return self.on is not None and self.on.finished_only and self.stopper.stops

    def at_cap(self, text: str) -> str:
        """What becomes of a completion max_new_tokens cut off before its stop: "drop" it (only
        finished ones are offered), "offer" it, or keep it as a "fallback" in case nothing else
        finishes (a line or block of whitespace, without the constraints)."""
        if self.finished_only:
            return "drop"
        return "offer" if self.stopper.counts_at_cap(text) else "fallback"

    def offered(self, kept: str) -> bool:
        """Whether a finished completion whose kept text is `kept` is offered: not when nothing of
        it is left (as when its first line repeats the prompt's last), nor a block that leaves
        brackets or a docstring open (as when a repeated line ended it inside them), nor a line
        or block with a whole statement that does not parse."""
        if not self.finished_only:
            return True
        if not kept.strip():
            return False
        if self.stopper.mode in ("line", "block") and self.on.parses:
            finished = (self.prompt_line + kept).split("\n")[:-1] if kept.endswith("\n") else []
            if first_unparsable_line(finished, self._layout_of_prompt()[2], self.joined) is not None:
                return False
        if self.stopper.mode == "block" and self.on.indentation:
            statement = last_statement((self.prompt_line + kept).split("\n"), self._layout_of_prompt()[2])
            return statement is None or not statement.continues
        return True

    def key(self, ids: list, kept: str):
        """What makes two finished completions the same suggestion: their ids, or with the
        constraints on, what they say apart from whitespace (whitespace_key)."""
        if self.on is not None and self.on.merge_whitespace_variants:
            return whitespace_key(kept)
        return tuple(ids)
