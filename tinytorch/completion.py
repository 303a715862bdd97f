"""Code completion's defaults: how the Copilot demo's Try it and `python -m tinytorch generate`
decode when nothing else is asked for.

A beam search over the current line, as a code editor completes. Greedy decoding of a character
model writes loops and blank indentation on code; the figures behind each choice are in the
README, printed by benchmarks/completion.py.
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
            "length_penalty": LENGTH_PENALTY, "num_return_sequences": suggestions}
