"""The pretraining commands as a newcomer types them, from a folder of their own: --help of a
preset, the validation file list piped into head, and the full-validation figures of an export."""

import hashlib
import json
import re
import subprocess
import sys
from dataclasses import fields

import pytest

from pretrain.__main__ import run
from pretrain.config import HELP, PRESETS, TrainConfig
from pretrain.corpus import load_corpus
from pretrain.validate import validate
from tinytorch import pretrained
from tinytorch.checkpoint import CheckpointError
from tinytorch.evaluate import identifier_completion, text_metrics

from test_pretrain import corpus, tiny_copilot_args  # noqa: F401  (fixture)

FLAGS = [f.name for f in fields(TrainConfig) if f.name not in ("model", "given")]


def python_m(tmp_path, *argv, **kwargs):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", *map(str, argv)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, **kwargs)


def help_entries(text: str) -> dict[str, str]:
    """{flag name: its help, joined onto one line} from argparse's --help output."""
    entries, current = {}, None
    for line in text.split("options:")[1].splitlines():
        match = re.match(r"^  --([\w-]+)(?: [A-Z_]+)?\s*(.*)$", line)
        if match:
            current = match.group(1).replace("-", "_")
            entries[current] = match.group(2)
        elif current and line.startswith(" " * 10):
            entries[current] += " " + line.strip()
    return {name: " ".join(value.split()) for name, value in entries.items()}


@pytest.mark.parametrize("model", ["copilot-tiny", "level1"])
def test_help_shows_the_chosen_presets_values_and_a_sentence_for_each_flag(tmp_path, model):
    done = python_m(tmp_path, "pretrain", model, "--help")
    assert (done.returncode, done.stderr) == (0, "")
    entries = help_entries(done.stdout)
    assert sorted(entries) == sorted(FLAGS)
    preset = PRESETS[model]
    for name in FLAGS:
        value = getattr(preset, name)
        assert entries[name].startswith(" ".join(HELP[name].split())), name
        if isinstance(value, bool):
            assert "default" not in entries[name]
        elif value != "":
            assert entries[name].endswith(f"(default: {value!r})"), (name, entries[name])
    assert entries["out"].endswith(f"(default: runs/{model})")
    assert "copilot: 96" not in done.stdout and f"the defaults shown are {model}'s" in " ".join(done.stdout.split())


def test_every_flag_has_a_sentence_of_its_own():
    assert sorted(HELP) == sorted(FLAGS)
    for name, sentence in HELP.items():
        words = sentence.split()
        assert len(words) >= 4 and sentence.lower() != name.replace("_", " "), name


def test_the_file_list_piped_into_head_ends_quietly(tmp_path, corpus):  # noqa: F811
    listing = subprocess.Popen([sys.executable, "-m", "pretrain.corpus", "train", "--corpus", str(corpus)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    listing.stdout.close()  # a reader that has left before the first line, as head does after its tenth
    _, err = listing.communicate(timeout=120)
    assert (listing.returncode, err) == (141, b"")


def test_validate_records_the_figures_on_every_validation_file(tmp_path, corpus):  # noqa: F811
    export = tmp_path / "export"
    assert run(tiny_copilot_args(corpus, tmp_path / "run") + ["--export", str(export)]) == 0
    weights = (export / "model.safetensors").read_bytes()

    figures = validate(export, str(corpus), command="python -m pretrain.validate export")

    val_texts = [text for _, text in load_corpus(str(corpus)).val]
    model, tokenizer = pretrained.load(export)
    metrics = text_metrics(model, tokenizer, val_texts)
    assert figures == {
        "files": len(val_texts), "characters": sum(len(t) - 1 for t in val_texts),
        "bits_per_char": round(metrics["bits_per_char"], 4),
        "next_char_accuracy": round(metrics["next_char_accuracy"], 4),
        "identifier_completion": round(identifier_completion(model, tokenizer, val_texts, limit=500), 4),
        "identifier_cases": 500, "command": "python -m pretrain.validate export",
        "weights_sha256": hashlib.sha256(weights).hexdigest(),
    }
    config = json.loads((export / "config.json").read_text())
    assert config["provenance"]["full_validation"] == figures
    assert (export / "model.safetensors").read_bytes() == weights  # the weights are not touched
    card = (export / "README.md").read_text()
    assert (f"**{figures['bits_per_char']:.3f} bits per character**, next-character accuracy "
            f"{figures['next_char_accuracy']:.3f}") in card and "`python -m pretrain.validate export`" in card

    other = tmp_path / "other"
    other.mkdir()
    (other / "a.py").write_text("x = 1\n" * 50)
    (other / "b.py").write_text("y = 2\n" * 50)
    with pytest.raises(CheckpointError, match="was trained on another corpus"):
        validate(export, str(other))
