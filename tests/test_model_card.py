"""Model cards: the shipped ones re-render byte for byte from their config.json and metrics.jsonl,
and the card a plain save writes and the one pretraining writes share one layout."""

import json
from pathlib import Path

import pytest

from pretrain.report import model_card
from tinytorch.checkpoint import save_pretrained

from conftest import tiny_gpt

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints"


@pytest.mark.parametrize("name", ["copilot", "copilot-large", "copilot-tiny", "level1"])
def test_the_shipped_cards_re_render_byte_for_byte(name):
    folder = SHIPPED / name
    config = json.loads((folder / "config.json").read_text())
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    provenance = config["provenance"]
    card = model_card(provenance["model"], config, records, provenance["steps"])
    assert card == (folder / "README.md").read_text(encoding="utf-8")


def test_a_plain_save_and_a_pretraining_export_share_the_card_layout(tmp_path):
    from tinytorch.text import CharTokenizer

    folder = save_pretrained(tiny_gpt(seed=1), tmp_path / "plain", tokenizer=CharTokenizer("abcdefgh\n"),
                             provenance={"steps": 3})
    plain = (folder / "README.md").read_text()
    config = json.loads((folder / "config.json").read_text())
    exported = model_card("copilot", config, [], 0)
    # the same Hub metadata, the same architecture sentence, the same code to load and run it
    head = ["---", "license: mit", "library_name: tinytorch", "pipeline_tag: text-generation", "tags:",
            "- tinytorch", "- gpt2", "- character-level"]
    architecture = (f"GPT-2 architecture: {config['n_layer']} layers, {config['n_head']} heads, n_embd "
                    f"{config['n_embd']}, context {config['n_positions']} characters, vocabulary 11 (ids 0 and 1 "
                    "are `<pad>` and `<unk>`). Weights in safetensors under GPT-2's names: "
                    "`transformers.GPT2LMHeadModel.from_pretrained` loads this folder too.")
    for card in (plain, exported):
        assert card.splitlines()[:len(head)] == head
        assert architecture in card.splitlines()
        assert "```python\nfrom tinytorch.nn import GPT\nfrom tinytorch.text import CharTokenizer\n" in card
    assert "model = GPT.from_pretrained(PATH_OR_REPO_ID)\n" in plain
    assert 'model = GPT.from_pretrained("checkpoints/copilot")  # or a Hub repo id\n' in exported
    assert plain.endswith('## Provenance\n\n```json\n{\n  "steps": 3\n}\n```\n')
