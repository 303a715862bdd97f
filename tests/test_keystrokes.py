"""Keystrokes saved (tinytorch.keystrokes): the count on hand-made suggestions, and the one-pass
word path against calling generate at every position, on a tiny model that has learned a short
text (so that many suggestions are right and the comparison means something)."""

import numpy as np
import pytest

import tinytorch
from tinytorch import completion
from tinytorch.evaluate import next_logits
from tinytorch.keystrokes import _type, keystrokes_saved
from tinytorch.nn import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.text import CharTokenizer
from tinytorch.training import sample_batch, train_step

TOKENIZER = CharTokenizer("abcdefghijklmnopqrstuvwxyz_ ():=.,\n0123456789")
TEXT = ("def add(a, b):\n    return a + b\n\n\ndef mul(a, b):\n    return a * b\n\n\n"
        "x = add(1, 2)\ny = mul(x, 3)\n").replace("+", "_").replace("*", "_")


@pytest.fixture(scope="module")
def model():
    """A tiny GPT trained on TEXT until it predicts most of it (one window holds all of it)."""
    tinytorch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=TOKENIZER.vocab_size, n_positions=128, n_embd=32, n_layer=2, n_head=2))
    ids = np.array(TOKENIZER.encode(TEXT))
    optimizer = AdamW(m.optimizer_groups(0.0), lr=3e-3)
    rng = np.random.default_rng(0)
    for step in range(150):
        train_step(m, optimizer, *sample_batch(ids, 8, 32, rng))
    return m.eval()


def test_typing_counts_one_key_per_accepted_suggestion_or_character():
    text = "return value\n"
    offers = {0: 6, 6: 0, 7: 5}  # "return" taken, " " typed, "value" taken, "\n" typed
    out = _type(text, 0, lambda i: offers.get(i, 0), "word", None)
    assert (out["keys"], out["characters"], out["accepted"], out["accepted_characters"]) == (4, 13, 2, 11)
    assert out["saved"] == pytest.approx(1 - 4 / 13)
    out = _type(text, 7, lambda i: offers.get(i, 0), "word", None)  # "return " is context
    assert (out["keys"], out["characters"]) == (2, 6)


def test_next_logits_are_the_forward_pass_over_each_prefix(model):
    ids = TOKENIZER.encode(TEXT)
    rows = next_logits(model, ids)
    with tinytorch.no_grad():
        direct = model(np.array([ids])).data[0]
    assert rows.shape == (len(ids), TOKENIZER.vocab_size)
    np.testing.assert_allclose(rows, direct, atol=1e-5)


@pytest.mark.parametrize("constraints", [True, None])
@pytest.mark.parametrize("start", [0, 20])
def test_the_one_pass_word_path_equals_generate_at_every_position(model, constraints, start):
    options = {**completion.word_options(), "constraints": constraints}
    fast = keystrokes_saved(model, TOKENIZER, TEXT, "word", start, options, fast=True)
    slow = keystrokes_saved(model, TOKENIZER, TEXT, "word", start, options, fast=False)
    assert fast == slow
    assert fast["accepted"] >= 10 and fast["saved"] > 0.2  # the model knows the text: a real comparison


def test_a_short_cap_cuts_words_the_same_way_on_both_paths(model):
    for constraints in (True, None):
        options = {**completion.word_options(3), "constraints": constraints}
        fast = keystrokes_saved(model, TOKENIZER, TEXT, "word", 0, options, fast=True)
        assert fast == keystrokes_saved(model, TOKENIZER, TEXT, "word", 0, options, fast=False)


def test_line_suggestions_are_counted_from_the_line_completion(model):
    text = TEXT[:60]
    got = keystrokes_saved(model, TOKENIZER, text, "line", start=30)
    position, keys = 30, 0  # the same protocol, written out
    while position < len(text):
        ids = TOKENIZER.encode(text[:position])
        out = model.generate(ids, tokenizer=TOKENIZER, **completion.beam_options("line"))
        suggestion = TOKENIZER.decode(out[len(ids):])
        position += len(suggestion) if suggestion and text.startswith(suggestion, position) else 1
        keys += 1
    assert (got["keys"], got["characters"]) == (keys, 30)
    assert got["accepted"] >= 1


def test_bad_arguments_raise_value_error(model):
    with pytest.raises(ValueError, match="unit"):
        keystrokes_saved(model, TOKENIZER, TEXT, "sentence")
    with pytest.raises(ValueError, match="one-pass"):
        keystrokes_saved(model, TOKENIZER, TEXT, "line", fast=True)
    with pytest.raises(ValueError, match="start"):
        keystrokes_saved(model, TOKENIZER, TEXT, start=len(TEXT) + 1)


def test_a_long_file_is_read_from_a_line_start_that_changes_no_suggestion(model):
    """Only the last window of ids and the last lines of a prompt matter: cut at the line start
    keystrokes reads from, a prompt far longer than both gives the same suggestion in every mode."""
    from tinytorch.code_layout import LINES_READ
    from tinytorch.keystrokes import _context_starts

    head = "".join(f"v{i} = {i}\n" for i in range(LINES_READ + 30))
    text = head + TEXT
    ids = TOKENIZER.encode(text)
    context = _context_starts(text, model.config.n_positions)
    for i in range(len(head) + 1, len(text), 7):
        first = context(i)
        assert 0 < first <= i - model.config.n_positions and text[first - 1] == "\n"
        assert text[first:i].count("\n") > LINES_READ
        for options in (completion.word_options(), completion.beam_options("line"), completion.beam_options("block")):
            whole = model.generate(ids[:i], tokenizer=TOKENIZER, **options)
            cut = model.generate(ids[first:i], tokenizer=TOKENIZER, **options)
            assert whole[i:] == cut[i - first:]
