"""demos.decoding, the demo's way into generation: the next word, and what Try it lists when no
line or block fits the cap (checked against generate with the library's defaults)."""

import math

import tinytorch
from demos import decoding
from tinytorch import completion
from tinytorch.nn import GPT, GPTConfig
from tinytorch.text import CharTokenizer

TOKENIZER = CharTokenizer.python()


def random_copilot(seed=0):
    """A Copilot-shaped model with random weights: it rarely ends a line or a block early."""
    tinytorch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, n_positions=32, n_embd=16, n_layer=2, n_head=2)).eval()


def test_next_word_is_greedy_word_completion_with_the_constraints():
    model = random_copilot()
    for prompt in ("def f(x):\n    return ", "import o", "x = y."):
        ids = TOKENIZER.encode(prompt)
        out = model.generate(ids, tokenizer=TOKENIZER, **completion.word_options())
        assert decoding.next_word(model, TOKENIZER, prompt) == TOKENIZER.decode(out[len(ids):])


def test_a_block_that_does_not_fit_gives_way_to_the_line_and_nothing_fitting_is_no_suggestion():
    model = random_copilot()
    # a comment: whatever random characters finish the line, it parses, so the syntax rule keeps it
    prompt = "def f(x):\n    # "
    ids = TOKENIZER.encode(prompt)
    assert model.generate(ids, tokenizer=TOKENIZER, output_scores=True, **completion.beam_options("block", 3, 40)) == []
    lines = model.generate(ids, tokenizer=TOKENIZER, output_scores=True, **completion.beam_options("line", 3, 40))
    assert lines  # the beam search's last step finds lines that end at the cap
    got = decoding.suggest(model, TOKENIZER, prompt, "block", {"max_new_tokens": 40}, 3)
    assert got == [(TOKENIZER.decode(s.ids[len(ids):]), math.exp(s.logprob)) for s in lines]
    # a line needs code and a newline: one character cannot be both
    assert decoding.suggest(model, TOKENIZER, prompt, "line", {"max_new_tokens": 1}, 3) == [decoding.NO_SUGGESTION]
