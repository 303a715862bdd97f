"""Keystrokes saved: how much typing a model's suggestions save on a text, as code completion is
measured (labml's python_autocomplete reports "above 30% key strokes in most files, close to 50%
in some" for its character model of Python).

The text is typed character by character. At each position the model offers its best completion
of one unit (the next word, or the rest of the line); when the text goes on with it (it is a
non-empty prefix of the rest), one key (Tab) accepts it and the cursor jumps past it; otherwise
one key types the next character. Saved = 1 - keys / characters.

Word by word, with greedy decoding, the whole text costs one forward pass: while the greedy
continuation from position i equals the text, its context is the text itself, so the argmax at
every position (tinytorch.evaluate.next_logits) tells what greedy decoding would write, and the
suggestion at i is accepted exactly when that argmax chain follows the text to the end of the
word (with the same code constraints and stop rule as generate: tinytorch.code_constraints.Rules).
It equals calling generate at every position wherever the text before a position fits the
model's window; past it, each position here sees between half and all of a window of context,
where generate's next characters see between 3/4 and all of one.
"""

from __future__ import annotations

import bisect

import numpy as np

from . import completion
from .code_constraints import CharClasses, CodeConstraints, Rules
from .code_layout import LINES_READ
from .evaluate import next_logits
from .stopping import StopCondition
from .tensor import no_grad

UNITS = ("word", "line")


def keystrokes_saved(model, tokenizer, text: str, unit: str = "word", start: int = 0, options: dict | None = None,
                     fast: bool | None = None, progress=None) -> dict:
    """How many keys typing `text` (normalized as the tokenizer does) takes with the model's
    suggestions, from character `start` on (the text before it is context, not counted).

    unit: "word" (completion.word_options: greedy, the next word) or "line" (completion.beam_options:
    the line completion, a beam search at every position: slow). options: generate()'s keyword
    arguments instead of the unit's defaults. fast: None uses the one-pass path whenever the
    options are greedy word completion, False calls generate at every position, True insists on
    the one-pass path. progress: called with the characters covered at each step.

    Returns {"saved": 1 - keys / characters, "keys", "characters", "accepted": suggestions taken,
    "accepted_characters": characters they wrote, "unit"}.
    """
    if unit not in UNITS:
        raise ValueError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
    options = dict(options if options is not None else completion.options(unit))
    ids = tokenizer.encode(text)
    written = tokenizer.decode(ids)  # one character per id: what generate's rules read too
    if not 0 <= start <= len(ids):
        raise ValueError(f"start must lie in [0, {len(ids)}], got {start}")
    one_pass = _one_pass_applies(options)
    if fast and not one_pass:
        raise ValueError("the one-pass path needs greedy word completion (completion.word_options)")
    context = _context_starts(written, model.config.n_positions)
    if one_pass and fast is not False:
        accepted_at = _greedy_words(model, tokenizer, ids, written, start, options, context)
    else:
        accepted_at = _generated(model, tokenizer, ids, written, options, context)
    return _type(written, start, accepted_at, unit, progress)


def _context_starts(text: str, window: int):
    """context(i): where the prompt for position i may start and still give the very suggestion
    the whole text before i gives: the model reads its last `window` ids, and the rules read its
    last LINES_READ lines (tinytorch.code_layout), so a line start before both is enough (a long
    file then costs no more per position than a short one)."""
    line_starts = [0] + [k + 1 for k, c in enumerate(text) if c == "\n"]

    def context(i):
        line = bisect.bisect_right(line_starts, i) - 1  # the line i lies in
        read = bisect.bisect_right(line_starts, max(0, i - window)) - 1  # the line the window starts in
        return line_starts[max(0, min(line - LINES_READ - 1, read))]
    return context


def _type(text: str, start: int, accepted_at, unit: str, progress) -> dict:
    """Type text from `start`: accepted_at(i) is how many characters the suggestion at i writes
    when the text goes on with it, else 0."""
    position, keys, accepted, accepted_chars = start, 0, 0, 0
    while position < len(text):
        n = accepted_at(position)
        step = n if n > 0 else 1
        accepted += n > 0
        accepted_chars += n
        keys += 1
        position += step
        if progress is not None:
            progress(step)
    characters = len(text) - start
    return {"saved": 1 - keys / characters if characters else 0.0, "keys": keys, "characters": characters,
            "accepted": accepted, "accepted_characters": accepted_chars, "unit": unit}


def _generated(model, tokenizer, ids, text, options, context):
    """accepted_at by calling generate at every position (any decoding)."""
    def accepted_at(i):
        if i == 0:
            return 0  # nothing to continue yet
        first = context(i)
        out = model.generate(ids[first:i], tokenizer=tokenizer, **{**options, "num_return_sequences": 1})
        suggestion = tokenizer.decode(out[i - first:])
        return len(suggestion) if suggestion and text.startswith(suggestion, i) else 0
    return accepted_at


def _one_pass_applies(options: dict) -> bool:
    return (options.get("stop") == "word" and options.get("temperature", 1.0) == 0 and options.get("num_beams", 1) == 1
            and options.get("repetition_penalty", 1.0) == 1.0 and not options.get("no_repeat_ngram_size", 0))


@no_grad()
def _greedy_words(model, tokenizer, ids, text, start, options, context):
    """accepted_at for greedy word completion from one forward pass over the text (see the module
    docstring): the argmax chain under the same Rules as generate, compared with the text."""
    max_new = options.get("max_new_tokens", completion.MAX_NEW_TOKENS)
    constraints = CodeConstraints.of(options.get("constraints"))
    chars = [tokenizer.decode([i]) for i in range(model.config.vocab_size)]
    classes = CharClasses(chars) if constraints is not None else None
    first = max(0, start - model.config.n_positions)  # the context the first typed positions read
    logits = next_logits(model, ids[first:]).astype(np.float64)  # (T - first, V): row t after ids[:first + t + 1]
    logits[:, [tokenizer.pad_id, tokenizer.unk_id]] = -np.inf  # as generate's guard
    best = logits.argmax(-1)

    def accepted_at(i):
        if i == 0 or max_new == 0:
            return 0
        rules = Rules(StopCondition("word", "", True), text[context(i):i], chars, constraints, classes)
        j = i
        while j - i < max_new:
            row = j - 1 - first  # the logits after text[:j]
            banned = rules.banned(text[i:j])
            if banned is None:
                c = int(best[row])
            else:
                allowed = np.where(banned, -np.inf, logits[row])
                if np.isneginf(allowed).all():
                    return 0  # every next character banned: no suggestion
                c = int(allowed.argmax())
            written = text[i:j] + chars[c]
            keep = rules.end(None, len(written), written)
            if keep is not None:  # the word ended; everything before it followed the text
                return keep if rules.offered(written[:keep]) else 0
            if j >= len(ids) or c != ids[j]:
                return 0  # the suggestion leaves the text (or runs past its end)
            j += 1
        return 0 if rules.at_cap(text[i:j]) == "drop" else max_new  # the cap cut it off
    return accepted_at
