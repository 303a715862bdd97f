"""Level 1: memorize a dozen `INPUT>OUTPUT` pairs, 4 characters each side from A-Z and 0-9.

The model sees `INPUT>` and must type OUTPUT. With a context of 8, the 8 characters before the
last one are all it ever needs. Shared by the pretraining script (`python -m pretrain level1`)
and the Level 1 demo, which trains the same model on a student's pairs.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from tinytorch.text import CharTokenizer

ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
SEPARATOR = ">"
SIDE = 4  # characters on each side of the separator
DEFAULT_TASKS = [
    ("FGHI", "GHIJ"), ("BBBB", "BBBB"), ("CCCC", "CCCC"), ("A1B2", "C3D4"),
    ("ABCD", "DCBA"), ("1234", "4321"), ("MNOP", "NOPQ"), ("WXYZ", "ZYXW"),
    ("K9L8", "M7N6"), ("5555", "5555"), ("Q1W2", "2W1Q"), ("RSTU", "STUV"),
]
# The Level 1 model: one layer, 16 numbers per character, a context of one pair minus its last
# character. The pretraining preset and the demo's from-scratch model both take it from here.
SHAPE = dict(n_positions=2 * SIDE, n_embd=16, n_layer=1, n_head=2)
_PAIR = re.compile(rf"^([{ALPHABET}]{{{SIDE}}}){SEPARATOR}([{ALPHABET}]{{{SIDE}}})$")


def task_tokenizer() -> CharTokenizer:
    return CharTokenizer(ALPHABET + SEPARATOR)


def parse_pair(line: str) -> tuple[str, str]:
    match = _PAIR.match(line.strip())
    if not match:
        raise ValueError(f"{line.strip()!r} is not a pair like FGHI>GHIJ "
                         f"({SIDE} characters from A-Z and 0-9, '>', {SIDE} more)")
    return match.group(1), match.group(2)


def parse_tasks(text: str, source: str = "tasks") -> list[tuple[str, str]]:
    """Pairs from text with one `INPUT>OUTPUT` per line (blank lines and # comments skipped)."""
    pairs = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            try:
                pairs.append(parse_pair(line))
            except ValueError as err:
                raise ValueError(f"{source}, line {number}: {err}") from None
    if not pairs:
        raise ValueError(f"{source}: no pairs found; write one INPUT>OUTPUT per line, e.g. FGHI>GHIJ")
    inputs = [i for i, _ in pairs]
    repeated = sorted({i for i in inputs if inputs.count(i) > 1})
    if repeated:
        raise ValueError(f"{source}: input(s) {', '.join(repeated)} appear more than once; "
                         "each input needs one answer")
    return pairs


def read_tasks(path) -> list[tuple[str, str]]:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: no such tasks file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as text ({err})") from None
    return parse_tasks(text, source=str(path))


def format_tasks(pairs) -> str:
    return "".join(f"{i}{SEPARATOR}{o}\n" for i, o in pairs)


def task_batch(pairs, tokenizer: CharTokenizer):
    """Every pair as one training row. x: (N, 8) = `INPUT>OUT` minus its last char; y: (N, 8) the
    next characters, with the positions inside INPUT ignored (-100): only the answer is learned."""
    rows = np.array([tokenizer.encode(i + SEPARATOR + o, strict=True) for i, o in pairs])  # (N, 9)
    x, y = rows[:, :-1], rows[:, 1:].copy()
    y[:, :SIDE] = -100  # predicting the input's own characters (and '>') is not the task
    return x, y


def evaluate_tasks(model, tokenizer: CharTokenizer, pairs) -> list[dict]:
    """Greedy answers: [{input, expected, answer, correct}] for each pair."""
    results = []
    for i, o in pairs:
        prompt = tokenizer.encode(i + SEPARATOR, strict=True)
        answer = tokenizer.decode(model.generate(prompt, SIDE, temperature=0.0)[len(prompt):])
        results.append({"input": i, "expected": o, "answer": answer, "correct": answer == o})
    return results
