import json

import pytest

from tinytorch.text import PYTHON_ALPHABET, CharTokenizer


def test_pad_and_unk_have_their_own_ids():
    tok = CharTokenizer("ab")
    assert tok.pad_id == 0 and tok.unk_id == 1
    assert tok.encode("ab?") == [2, 3, 1]
    assert tok.decode([0, 2, 1, 3, 0]) == "a\ufffdb"


def test_round_trip_and_normalization():
    tok = CharTokenizer.python()
    assert tok.vocab_size == 98 and len(PYTHON_ALPHABET) == 96
    text = "def f(x):\r\n\treturn x  # ok\n"
    assert tok.decode(tok.encode(text)) == "def f(x):\n    return x  # ok\n"


def test_strict_encoding_names_the_unknown_characters():
    tok = CharTokenizer.python()
    with pytest.raises(ValueError, match="'é'"):
        tok.encode("café", strict=True)
    assert tok.unknown_chars("naïve ☃") == ["ï", "☃"]


def test_from_text_and_save_load(tmp_path):
    tok = CharTokenizer.from_text("hello\tworld")
    assert "\t" not in tok.chars and " " in tok.chars
    tok.save(tmp_path / "tok.json")
    assert json.loads((tmp_path / "tok.json").read_text())["chars"] == " dehlorw"
    assert CharTokenizer.load(tmp_path / "tok.json") == tok
