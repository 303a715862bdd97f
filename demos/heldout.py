"""The student's text in two parts: what the fine-tune trains on, and a held-out part it never
sees, on which "better" is measured. A figure on the text a model just trained on shows what it
memorized; the held-out part shows whether it learned (benchmarks/finetune_heldout.py).

The held-out part is the end of the text, cut at a line boundary: the rest of the same file, the
way a student goes on writing it.
"""

from __future__ import annotations

from dataclasses import dataclass

HELD_OUT_PERCENT = 20  # the text's last fifth, by default
PERCENT_RANGE = (0, 50)  # 0 trains on everything
MIN_LINES = 20  # a shorter text trains on all of it: a few lines tell too little either way
MAX_SCORED_CHARS = 4_000  # of the held-out part scored during a fine-tune: bounds each evaluation's cost


@dataclass(frozen=True)
class Split:
    train: str  # what the fine-tune trains on
    held_out: str  # the rest, never trained on; "" when nothing is held out
    first_held_line: int | None  # the held-out part's first line (1-based), None when nothing is held out

    @property
    def has_held_out(self) -> bool:
        return bool(self.held_out)

    def describe(self) -> str:
        """One sentence for the page."""
        if not self.has_held_out:
            return "Nothing is held out: the fine-tune trains on all of the text."
        lines = self.held_out.count("\n") + (not self.held_out.endswith("\n"))
        return (f"Training on lines 1-{self.first_held_line - 1}; holding out lines {self.first_held_line}-"
                f"{self.first_held_line + lines - 1} ({len(self.held_out):,} characters), which it never sees.")


def split_text(text: str, percent: float = HELD_OUT_PERCENT) -> Split:
    """Hold out the last `percent` of the text's lines (at least one), cut at a line boundary.
    A text of fewer than MIN_LINES non-blank lines, or percent 0, holds nothing out."""
    lines = text.splitlines(keepends=True)
    if percent <= 0 or sum(bool(line.strip()) for line in lines) < MIN_LINES:
        return Split(text, "", None)
    cut = len(lines) - max(1, round(len(lines) * percent / 100))
    while cut < len(lines) and not lines[cut].strip():  # start the held-out part at code, not a blank line
        cut += 1
    if cut == len(lines):
        return Split(text, "", None)
    return Split("".join(lines[:cut]), "".join(lines[cut:]), cut + 1)
