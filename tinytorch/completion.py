"""Code completion's defaults: how the Copilot demo's Try it and `python -m tinytorch generate`
decode when nothing else is asked for.

A beam search over the current line (or block), as a code editor completes, with the code
constraints on (tinytorch.code_constraints: no whitespace runs, indentation as the code before
allows, only finished completions). Greedy decoding of a character model writes loops and blank
indentation on code; the figures behind each choice are in benchmarks/README.md, printed by
benchmarks/completion.py and benchmarks/keystrokes.py.
"""

from __future__ import annotations

NUM_BEAMS = 4  # 2 beams broke more completions; 8 no fewer than 4, at several times the latency
LENGTH_PENALTY = 0.0  # rank by total log-probability: by the mean (1.0), long loops win
MAX_NEW_TOKENS = 80  # a hard cap; a line completion ends at its newline first
REPETITION_PENALTY = 1.2  # the sampling mode's guard against loops
NO_REPEAT_NGRAM_SIZE = 0  # banning repeated n-grams also bans real code (`self.`, indentation)


def beam_options(stop: str = "line", suggestions: int = 1, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """generate()'s keyword arguments for completing the line (stop="line") or block ("block")."""
    return {"max_new_tokens": max_new_tokens, "stop": stop, "num_beams": NUM_BEAMS,
            "length_penalty": LENGTH_PENALTY, "num_return_sequences": suggestions, "constraints": True}


def word_options(max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """generate()'s keyword arguments for the next word (an editor's "accept next word"): greedy.
    A beam search of 4 saved 3-4 points more keystrokes on 8 samples (benchmarks/README.md), but
    only greedy words can be measured on a whole text in one forward pass (tinytorch.keystrokes:
    0.2-0.5 s for 3,000 characters, against about a minute per 1,500 with a beam search at every
    position), and the word Try it offers should be the word its keystrokes figure counts."""
    return {"max_new_tokens": max_new_tokens, "stop": "word", "temperature": 0.0, "num_beams": 1,
            "constraints": True}


def options(stop: str, suggestions: int = 1, max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """The defaults for completing the line, the block or the word (stop: "line", "block", "word")."""
    if stop == "word":
        return word_options(max_new_tokens)
    return beam_options(stop, suggestions, max_new_tokens)
