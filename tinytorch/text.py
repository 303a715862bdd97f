"""CharTokenizer: one id per character, plus <pad> and <unk>, each with an id of its own."""

from __future__ import annotations

import json
import string
from pathlib import Path

from .checkpoint import CONFIG_NAME, CheckpointError, read_config, shown_value, write_config
from .locate import resolve

PAD, UNK = "<pad>", "<unk>"
PAD_ID, UNK_ID = 0, 1
UNK_CHAR = "\ufffd"  # how an unknown id decodes: one character, so text and ids stay aligned

# Printable ASCII and newline: what Python source is made of once tabs become spaces.
PYTHON_ALPHABET = "\n" + "".join(c for c in string.printable if c.isprintable())
# Spaces per tab. Bounded because normalize() expands every tab before any length limit can
# see the text: a tab_size from a downloaded config.json must not turn a prompt of 300 tabs
# into gigabytes. Editors use 2, 4 or 8; no kit model needs more than 16.
MAX_TAB_SIZE = 16


def check_tab_size(value) -> int:
    """`value` as a tab size (a whole number from 1 to MAX_TAB_SIZE), or ValueError saying so."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_TAB_SIZE:
        raise ValueError(f"tab_size must be a whole number from 1 to {MAX_TAB_SIZE}, got {value!r:.40}")
    return value


class CharTokenizer:
    """Maps characters to ids and back.

    Id 0 is `<pad>` (never a real character: batches are padded with it and losses ignore it),
    id 1 is `<unk>` (any character outside the alphabet), then the alphabet in sorted order.
    Text is normalized first: "\\r\\n" -> "\\n" and tabs -> `tab_size` spaces.
    """

    def __init__(self, chars, tab_size: int = 4):
        chars = sorted(set(chars) - {"\t", "\r"})
        if not chars:
            raise ValueError("a tokenizer needs at least one character")
        self.chars = chars
        self.tab_size = check_tab_size(tab_size)
        self.itos = [PAD, UNK] + chars
        self.stoi = {c: i for i, c in enumerate(chars, start=2)}

    @classmethod
    def from_text(cls, text: str, tab_size: int = 4) -> "CharTokenizer":
        """The alphabet of `text` (after normalization)."""
        return cls(set(text.replace("\t", " ")), tab_size=tab_size)

    @classmethod
    def python(cls) -> "CharTokenizer":
        """The Copilot alphabet: printable ASCII and newline."""
        return cls(PYTHON_ALPHABET)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    @property
    def pad_id(self) -> int:
        return PAD_ID

    @property
    def unk_id(self) -> int:
        return UNK_ID

    def normalize(self, text: str) -> str:
        """The text the model sees: at most tab_size times as long as `text`."""
        return text.replace("\r\n", "\n").replace("\r", "\n").replace("\t", " " * self.tab_size)

    def unknown_chars(self, text: str) -> list[str]:
        """The distinct characters of `text` (normalized) that are not in the alphabet."""
        return sorted(set(self.normalize(text)) - self.stoi.keys())

    def encode(self, text: str, strict: bool = False) -> list[int]:
        """Ids of the characters of `text`. Unknown characters become <unk>, or with `strict`
        raise ValueError naming them."""
        text = self.normalize(text)
        if strict:
            unknown = self.unknown_chars(text)
            if unknown:
                shown = ", ".join(repr(c) for c in unknown[:10])
                raise ValueError(f"{len(unknown)} character(s) outside the tokenizer's alphabet: {shown}")
        return [self.stoi.get(c, UNK_ID) for c in text]

    def decode(self, ids) -> str:
        """Text of `ids`: <pad> is dropped, <unk> and out-of-range ids show as U+FFFD."""
        out = []
        for i in ids:
            i = int(i)
            if i == PAD_ID:
                continue
            out.append(self.itos[i] if 2 <= i < len(self.itos) else UNK_CHAR)
        return "".join(out)

    # ------------------------------------------------------------------ persistence
    def to_dict(self) -> dict:
        return {"type": "char", "chars": "".join(self.chars), "pad_token": PAD, "unk_token": UNK,
                "tab_size": self.tab_size}

    @classmethod
    def from_dict(cls, values: dict) -> "CharTokenizer":
        if values.get("type", "char") != "char" or not isinstance(values.get("chars"), str):
            raise ValueError("not a character tokenizer: expected {'type': 'char', 'chars': '...'}")
        return cls(values["chars"], tab_size=values.get("tab_size", 4))

    def save(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path) -> "CharTokenizer":
        return cls.from_dict(json.loads(Path(path).read_text()))

    @classmethod
    def from_pretrained(cls, path_or_repo_id: str, revision: str | None = None) -> "CharTokenizer":
        """The tokenizer stored in a checkpoint folder's config.json (local path or Hub repo id)."""
        folder = resolve(path_or_repo_id, revision, validate=cls.check_config)
        return cls.from_config(read_config(folder), folder / CONFIG_NAME)

    @classmethod
    def check_config(cls, values: dict, path) -> None:
        """Raise CheckpointError when a config.json's tokenizer entry, if it has one, does not load."""
        if "tokenizer" in values:
            cls.from_config(values, path)

    @classmethod
    def from_config(cls, values: dict, path) -> "CharTokenizer":
        """The tokenizer of a config.json's values, checked against its vocab_size; `path` names the file."""
        if "tokenizer" not in values:
            raise CheckpointError(f"{path}: holds no 'tokenizer' entry; this checkpoint has no character vocabulary")
        try:
            tokenizer = cls.from_dict(values["tokenizer"])
        except (TypeError, ValueError, AttributeError) as err:
            raise CheckpointError(f"{path}: bad 'tokenizer' entry ({err})") from None
        if "vocab_size" in values and tokenizer.vocab_size != values["vocab_size"]:
            raise CheckpointError(f"{path}: the tokenizer has {tokenizer.vocab_size} ids but vocab_size is "
                                  f"{shown_value(values['vocab_size'])}")
        return tokenizer

    def save_pretrained(self, directory) -> None:
        """Put the tokenizer (and its vocab_size) into directory/config.json, keeping whatever else it holds."""
        path = Path(directory) / CONFIG_NAME
        values = read_config(directory) if path.exists() else {}
        if values.get("vocab_size", self.vocab_size) != self.vocab_size:
            raise CheckpointError(
                f"{path}: the model's vocab_size is {values['vocab_size']} but the tokenizer has {self.vocab_size} ids")
        values.update(vocab_size=self.vocab_size, tokenizer=self.to_dict())
        write_config(directory, values)

    def __eq__(self, other) -> bool:
        return isinstance(other, CharTokenizer) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"CharTokenizer(vocab_size={self.vocab_size})"
