"""How the Copilot demo turns a prompt into suggestions: the decoding modes of Try it and Compare.

"line" (the default) and "block" run a beam search that stops at the end of the line or of the
block, as code editors complete, with the code constraints on (tinytorch.code_constraints: no
whitespace runs, no loops, indentation as the code allows, only finished completions, no
duplicates that differ in whitespace alone); next_word is an editor's "accept next word";
"sample" draws characters (temperature, top-k, top-p) with the
repetition guard on. Why a beam search and not greedy decoding: a character model decoded
greedily writes blank lines and loops on code, and a search that ranks whole lines does not
(benchmarks/completion.py measures both on held-out code; figures in benchmarks/README.md).
"""

from __future__ import annotations

import math

from tinytorch import completion

MODES = {"line": "Complete the line", "block": "Complete the block", "sample": "Sample freely"}
MODE = "line"
SUGGESTIONS = 3  # how many completions Try it lists, best first
NO_SUGGESTION = ("", 0.0)  # what suggest lists when no completion reaches its end within the cap
# Sample mode guards against loops with tinytorch.completion's settings (why those, with the
# figures of `python benchmarks/completion.py --sampling`: benchmarks/README.md).


def check_mode(mode) -> str:
    """The mode's key, from a key or its label; a ValueError naming the choices otherwise."""
    for key, label in MODES.items():
        if mode in (key, label):
            return key
    raise ValueError(f"unknown completion mode {mode!r}: choose one of {', '.join(MODES)}")


def options(mode: str, settings: dict, suggestions: int = 1) -> dict:
    """generate()'s keyword arguments for `mode`. settings: max_new_tokens, temperature, top_k,
    top_p, seed (the last four only matter when sampling)."""
    if mode == "sample":
        return {**settings, "repetition_penalty": completion.REPETITION_PENALTY,
                "no_repeat_ngram_size": completion.NO_REPEAT_NGRAM_SIZE}
    return completion.beam_options(mode, suggestions, settings["max_new_tokens"])


def suggest(model, tokenizer, prompt: str, mode: str, settings: dict, suggestions: int = 1) -> list[tuple[str, float]]:
    """[(completion text, its probability under the model)], best first: up to `suggestions`
    distinct ones for line and block, one when sampling.

    Line and block completions are only offered once they reach their end within
    settings["max_new_tokens"] (tinytorch.code_constraints); a block that does not fit gives way
    to the line suggestions (the block's first line); when no line fits either, the one
    suggestion is NO_SUGGESTION (an empty completion of probability 0).
    """
    ids = tokenizer.encode(prompt)
    found = model.generate(ids, tokenizer=tokenizer, output_scores=True,
                           **options(mode, settings, 1 if mode == "sample" else suggestions))
    if not found and mode == "block":
        found = model.generate(ids, tokenizer=tokenizer, output_scores=True, **options("line", settings, suggestions))
    out = []
    for s in found:
        text = tokenizer.decode(s.ids[len(ids):])
        if text not in (t for t, _ in out):
            out.append((text, math.exp(s.logprob)))
    return out or [NO_SUGGESTION]


def next_word(model, tokenizer, prompt: str, max_new_tokens: int = completion.MAX_NEW_TOKENS) -> str:
    """What an editor's "accept next word" (Tab) would take: the rest of the identifier the prompt
    ends in, or the characters before the next identifier on the line and that identifier
    (tinytorch.completion.word_options: greedy, with the code constraints); "" when the model's
    next word is not on this line."""
    ids = tokenizer.encode(prompt)
    out = model.generate(ids, tokenizer=tokenizer, **completion.word_options(max_new_tokens))
    return tokenizer.decode(out[len(ids):])
