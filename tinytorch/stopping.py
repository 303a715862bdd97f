"""When a completion ends: at the end of a line, of a block or of a word, or after given strings
or id sequences. One condition object serves greedy, sampling and beam search alike.

Code completion stops where an editor would: "line" once the completion has written something
and then a newline; "block" at a blank line or at a line indented less than the block (the
prompt's last line, one indent unit deeper when that line opens a block: `def f(x):`). Both
ignore what comes before the completion's first non-blank character, so a prompt that ends at
the end of a line completes the next one rather than nothing. "word" is an editor's "accept the
next word": the rest of the identifier the cursor is in, or else what comes before the next
identifier on the line (`.`, `(`, ` = `) and that identifier; never across a newline.
"""

from __future__ import annotations

from .code_layout import IDENTIFIER_CHARS, block_level, indent_unit, last_lines

MODES = ("line", "block", "word")


class StopCondition:
    """stop: None, "line", "block", "word", or a list of stop strings and/or id sequences (lists of ids).

    Called after each new token, it returns None while the completion goes on, or how many completion tokens to
    keep once it has ended: all of them for "line" and stop strings and ids (the newline and the
    stop string stay, as in transformers); for "block", what precedes the blank line or the
    dedented line, which belong to the code after the block; for "word", what precedes the
    character after the identifier (none at a newline before any identifier).
    """

    def __init__(self, stop=None, prompt_text: str = "", has_tokenizer: bool = False):
        self.mode = None
        self.strings, self.id_seqs = [], []
        if isinstance(stop, str):
            if stop not in MODES:
                raise ValueError(f"stop must be 'line', 'block', 'word' or a list of strings or id sequences, "
                                 f"got {stop!r}")
            self.mode = stop
        elif stop is not None:
            for s in stop:
                if isinstance(s, str):
                    if s:
                        self.strings.append(s)
                elif len(s):
                    self.id_seqs.append([int(i) for i in s])
        if (self.mode or self.strings) and not has_tokenizer:
            raise ValueError("stopping at a line, a block, a word or a string needs the tokenizer: "
                             "generate(..., tokenizer=tokenizer)")
        # the block's indentation (block mode only): a line indented less ends it
        self.level = block_level(prompt_text, indent_unit(last_lines(prompt_text)[:-1])) \
            if self.mode == "block" else None

    @property
    def needs_text(self) -> bool:
        return bool(self.mode or self.strings)

    @property
    def stops(self) -> bool:
        """Whether anything but max_new_tokens ends a completion."""
        return bool(self.mode or self.strings or self.id_seqs)

    def counts_at_cap(self, text: str) -> bool:
        """Whether a completion that max_new_tokens cut off is one: for "line" and "block", not
        when it is only whitespace (a model deep in indentation can write spaces for ever)."""
        return not self.mode or bool(text.strip())

    def __call__(self, ids: list, new: int, text: str) -> int | None:
        """ids: prompt + completion; new: the completion's length in ids; text: its text (one
        character per id, as CharTokenizer decodes; empty when no condition needs it)."""
        for s in self.id_seqs:
            if len(ids) >= len(s) and ids[-len(s):] == s:
                return new
        for s in self.strings:
            if text.endswith(s):
                return new
        if self.mode == "line":
            return new if text.endswith("\n") and text.strip() else None
        if self.mode == "block":
            return block_end(text, self.level)
        if self.mode == "word":
            return word_end(text)
        return None


def block_end(text: str, indent: int) -> int | None:
    """Where the block that `text` continues has ended, checked at its last character: the length
    of text to keep, or None. A block ends at a blank line, or at the first character of a line
    indented less than `indent`; only once the completion holds a non-blank character before it."""
    if text.endswith("\n"):  # a blank line just ended?
        body = text[:-1]
        start = body.rfind("\n")
        if start >= 0 and not body[start + 1:].strip() and body[:start].strip():
            return start + 1  # up to the newline that ends the last line with code
        return None
    start = text.rfind("\n")
    line = text[start + 1:]
    if start < 0 or line[-1] == " " or line[:-1].strip():  # not the first character of a new line
        return None
    if len(line) - 1 < indent and text[:start].strip():
        return start + 1
    return None


def word_end(text: str) -> int | None:
    """Where a word completion that `text` is has ended, checked at its last character: the
    length of text to keep, or None. It ends at the first character that is not an identifier's
    after one that is (kept: what precedes it); a newline before any identifier character ends
    it with nothing kept (a word completion never crosses a line)."""
    if text[-1] in IDENTIFIER_CHARS:
        return None
    if len(text) > 1 and text[-2] in IDENTIFIER_CHARS:  # the first non-identifier after one: earlier ones ended it
        return len(text) - 1
    return 0 if text[-1] == "\n" else None
