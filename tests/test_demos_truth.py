"""The Copilot page tells the truth: the model it names is the one loaded (also when the default
cannot load), the figures it quotes are the full-validation ones, the loss speaks bits like
Compare, the Compare prompts keep their indentation, and the zip loads however it is unpacked."""

import hashlib
import html
import json
import math
import re
import zipfile
from pathlib import Path

import pytest

from demos import copilot as C
from demos import names, views
from demos.common import examples
from demos.curves import curve_frame
from demos.copilot import Copilot
from tinytorch.checkpoint import read_config
from tinytorch.shipped import SHIPPED_DIR
from tinytorch.nn import GPT

from test_demos import finetune, folders, same, weights  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
PANTRY = examples()["pantry.py"]


@pytest.fixture
def no_network(monkeypatch):
    """The Hub at a loopback port where nothing listens: what a classroom without Internet sees."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)


def test_a_default_that_cannot_load_falls_back_to_the_next_and_says_so(folders, no_network):  # noqa: F811
    app = Copilot(["someone/unreachable", folders["copilot"]])
    _, details, session = app.generate("def ", 5)
    assert session.base.source == folders["copilot"]
    assert details["model"] == "copilot"  # a folder outside the project is named, not its server path
    card = html.unescape(app.card(session))  # the card escapes what it did not write itself
    assert "Could not load 'someone/unreachable': someone/unreachable: could not reach the Hub" in card
    assert "HF_HUB_OFFLINE=1" in card and "**Loaded copilot instead.**" in card
    app.load(folders["copilot"], session)  # a Load by hand: the notice has done its job
    assert "Could not load" not in html.unescape(app.card(session))


def test_the_loss_curve_and_the_progress_speak_bits_per_character(folders):  # noqa: F811
    frame = curve_frame([(1, 2 * math.log(2)), (2, math.log(2))], C.bits, average=True)
    assert list(frame["loss"][:2]) == pytest.approx([2.0, 1.0])  # the batch losses, in bits
    assert list(frame["loss"][2:]) == pytest.approx([2.0, (0.8 * 0.2 * 2 + 0.2 * 1) / (1 - 0.8**2)])

    app = Copilot([folders["copilot"]])
    _, session = app.load(folders["copilot"])
    updates = finetune(app, session, steps=10)
    last_loss = session.curve[-1][1]
    assert f"loss {last_loss / math.log(2):.3f} bits/char" in updates[-1][0]
    shown = updates[-1][1]  # the curve the page draws: the same batch losses, in bits
    batches = shown[shown["series"] == "batch loss"]
    assert list(batches["loss"]) == pytest.approx([loss / math.log(2) for _, loss in session.curve])


def test_the_card_quotes_the_figures_on_every_validation_file():
    config = read_config(SHIPPED_DIR / "copilot")
    card = views.model_card("copilot", config, 469_248)
    assert ("1.456 bits per character and 42.6% of identifiers completed from 3 characters, on all 78 "
            "validation files") in card
    assert "1.21 bits" not in card and "58%" not in card  # the training-time slice's figures


@pytest.mark.parametrize("name", ["copilot", "copilot-tiny", "copilot-large"])
def test_readme_model_card_and_provenance_agree(name):
    figures = read_config(SHIPPED_DIR / name)["provenance"]["full_validation"]
    assert figures["files"] == 78 and figures["identifier_cases"] == 500
    assert figures["command"] == f"python -m pretrain.validate checkpoints/{name}"
    row = next(line for line in (REPO / "README.md").read_text().splitlines() if line.startswith(f"| `{name}` |"))
    cells = [c.strip().strip("*") for c in row.split("|")[1:-1]]
    assert cells[2:4] == [f"{figures['bits_per_char']:.3f}", f"{figures['identifier_completion']:.1%}"]
    card = (SHIPPED_DIR / name / "README.md").read_text()
    assert f"**{figures['bits_per_char']:.3f} bits per character**" in card
    assert f"**{figures['identifier_completion']:.1%} of identifiers completed**" in card


@pytest.mark.parametrize("name", ["copilot", "copilot-tiny", "copilot-large"])
def test_the_shipped_figures_were_measured_on_the_shipped_weights(name):
    digest = hashlib.sha256((SHIPPED_DIR / name / "model.safetensors").read_bytes()).hexdigest()
    assert read_config(SHIPPED_DIR / name)["provenance"]["full_validation"]["weights_sha256"] == digest


def test_compare_prompts_keep_the_first_lines_indentation():
    from demos.app import build_app

    demo = build_app(tabs=("copilot",))
    values = [c["props"].get("value") for c in demo.get_config_file()["components"]
              if c.get("props", {}).get("label") == "Prompts"]
    expected = names.format_prompts(names.default_prompts(PANTRY))
    assert values == [expected] and expected.startswith("        if pantry_is_low(jar):\n            pan")


def test_the_try_it_prompt_keeps_its_trailing_indentation():
    """The default prompt ends in the 4 spaces of a function body: the model completes from there."""
    from demos.app import build_app
    from demos.copilot_ui import PROMPT

    demo = build_app(tabs=("copilot",))
    values = [c["props"].get("value") for c in demo.get_config_file()["components"]
              if c.get("props", {}).get("label") == "Prompt"]
    assert values == [PROMPT] and PROMPT.endswith("):\n    ")


def test_the_zip_holds_one_folder_and_loads_from_it_or_from_where_it_was_unpacked(folders, tmp_path):  # noqa: F811
    app = Copilot([folders["copilot"]])
    _, session = app.load(folders["copilot"])
    finetune(app, session, steps=10)
    path = app.download(session)
    with zipfile.ZipFile(path) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
        archive.extractall(tmp_path / "unzipped")
    assert tops == {C.ZIPPED}
    for folder in (tmp_path / "unzipped" / C.ZIPPED, tmp_path / "unzipped"):
        assert same(weights(GPT.from_pretrained(folder)), weights(session.model))
    config = json.loads((tmp_path / "unzipped" / C.ZIPPED / "config.json").read_text())
    assert config["provenance"]["fine_tune"]["steps_done"] == 10


def test_the_page_says_how_the_zip_unpacks():
    from demos.app import build_app

    demo = build_app(tabs=("copilot",))
    texts = " ".join(str(c["props"].get("value", "")) for c in demo.get_config_file()["components"])
    assert re.search(rf"The zip holds one folder, `{C.ZIPPED}/`.*the folder you unzipped into loads too", texts)
