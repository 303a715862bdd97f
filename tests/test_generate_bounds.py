"""Generation's options are bounded: a value that would overflow a score, make the logits infinite
or allocate a cache per beam by the thousand is a ValueError naming the range, in the library and
as one line from the command line, never a traceback, a NaN or a MemoryError."""

import warnings

import numpy as np
import pytest

from tinytorch import generate as G
from tinytorch.checkpoint import save_pretrained
from tinytorch.text import CharTokenizer

from conftest import tiny_gpt
from test_cli import run


@pytest.mark.parametrize("options, message", [
    ({"length_penalty": 200.0, "num_beams": 4}, "length_penalty must be a number from -10 to 10, got 200.0"),
    ({"num_beams": 1_000_000}, "num_beams must be an integer from 1 (no beam search) to 1024, got 1000000"),
    ({"num_beams": 5000}, "num_beams must be an integer from 1 (no beam search) to 1024, got 5000"),
    ({"repetition_penalty": 1e-308}, "repetition_penalty must be a number from 0.01 to 100 (1 = off), got 1e-308"),
    ({"repetition_penalty": 1e308}, "repetition_penalty must be a number from 0.01 to 100 (1 = off), got 1e+308"),
    ({"max_new_tokens": 10**9}, "max_new_tokens must be an integer from 0 to 1,000,000, got 1000000000"),
])
def test_out_of_range_options_are_a_value_error_naming_the_range(options, message):
    model = tiny_gpt(seed=4)
    kwargs = {"max_new_tokens": 5, "temperature": 0.0, **options}
    with pytest.raises(ValueError) as err:
        model.generate([2, 3], **kwargs)
    assert str(err.value) == message


def test_the_bounds_keep_the_logits_finite():
    """At the ends of the ranges every score stays a finite number and no id is <unk>."""
    model, tokenizer = tiny_gpt(seed=4), CharTokenizer("abcdefgh\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow or a NaN warns
        for penalty in G.REPETITION_PENALTY_RANGE:
            found = model.generate(tokenizer.encode("abca"), 30, temperature=0.7, seed=1, repetition_penalty=penalty,
                                   tokenizer=tokenizer, output_scores=True)
            assert np.isfinite(found[0].logprob) and tokenizer.unk_id not in found[0].ids
        for length_penalty in G.LENGTH_PENALTY_RANGE:
            found = model.generate(tokenizer.encode("ab"), 12, num_beams=G.MAX_BEAMS, length_penalty=length_penalty,
                                   num_return_sequences=3, tokenizer=tokenizer, output_scores=True)
            assert all(np.isfinite([s.score, s.logprob]).all() for s in found)


@pytest.mark.parametrize("flags, message", [
    (["--length-penalty", "200"], "error: length_penalty must be a number from -10 to 10, got 200.0\n"),
    (["--num-beams", "1000000", "--max-new-tokens", "5"],
     "error: num_beams must be an integer from 1 (no beam search) to 1024, got 1000000\n"),
    (["--repetition-penalty", "1e-308"],
     "error: repetition_penalty must be a number from 0.01 to 100 (1 = off), got 1e-308\n"),
])
def test_the_cli_says_the_range_in_one_line(tmp_path, capsys, flags, message):
    folder = save_pretrained(tiny_gpt(seed=4), tmp_path / "ckpt", tokenizer=CharTokenizer("abcdefgh\n"))
    assert run(capsys, "generate", folder, "abc", *flags) == (1, "", message)
