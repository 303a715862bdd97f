"""Checkpoints as an attacker would craft them, loaded from a folder, the CLI and a loopback Hub:
each is refused with one line that names what is wrong, before anything big is allocated or
downloaded (the code that would allocate is made to fail the test if it runs)."""

import json
import math
import re

import numpy as np
import pytest

from tinytorch import checkpoint
from tinytorch import hub as tt_hub
from tinytorch.checkpoint import CheckpointError, save_pretrained, write_weights
from tinytorch.nn import GPT, GPTConfig
from tinytorch.text import CharTokenizer

from conftest import tiny_gpt
from test_cli import run, run_subprocess
from test_hub import checkpoint_files, hub, hub_env  # noqa: F401  (fixtures)


@pytest.fixture
def tokenizer():
    return CharTokenizer("abcdefgh\n")  # 11 ids, tiny_gpt's vocabulary


@pytest.fixture
def folder(tmp_path, tokenizer):
    return save_pretrained(tiny_gpt(seed=3), tmp_path / "ckpt", tokenizer=tokenizer)


class Raw(str):
    """JSON text written as it is (json.dumps cannot write an int of 5001 digits)."""


def edit_config(folder, **changes):
    values = json.loads((folder / "config.json").read_text())
    raw = {}
    for key, value in changes.items():
        if isinstance(value, Raw):
            raw[f'"@{key}@"'], value = value, f"@{key}@"
        if key == "tab_size":
            values["tokenizer"]["tab_size"] = value
        else:
            values[key] = value
    text = json.dumps(values)
    for placeholder, value in raw.items():
        text = text.replace(placeholder, value)
    (folder / "config.json").write_text(text)


def one_line_error(capsys, *argv):
    status, out, err = run(capsys, *argv)
    assert status == 1 and out == "" and err.startswith("error: ") and err.count("\n") == 1, (status, out, err)
    return err


# ================================================================== 1. tab_size
@pytest.mark.parametrize("tab_size", [0, -1, 17, 100_000, 2e8, 1e300, 4.0, "4", True, None])
def test_tab_size_is_a_whole_number_from_1_to_16(folder, tab_size, capsys):
    with pytest.raises(ValueError, match=r"^tab_size must be a whole number from 1 to 16, got "):
        CharTokenizer("ab", tab_size=tab_size)
    edit_config(folder, tab_size=tab_size)
    with pytest.raises(CheckpointError, match=r"bad 'tokenizer' entry \(tab_size must be a whole number from 1 to 16"):
        CharTokenizer.from_pretrained(folder)
    err = one_line_error(capsys, "generate", folder, "\t" * 300, "--max-new-tokens", 1)
    assert "tab_size must be a whole number from 1 to 16" in err


def test_tab_sizes_1_to_16_expand_as_before():
    for size in (1, 2, 4, 8, 16):
        assert CharTokenizer("ab ", tab_size=size).normalize("\ta\r\n") == " " * size + "a\n"


# ================================================================== 2. huge sizes, parameter cap
def test_parameter_count_is_the_models_own():
    for values in [dict(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2),
                   dict(vocab_size=98, n_positions=128, n_embd=96, n_layer=4, n_head=4)]:
        config = GPTConfig(**values)
        assert checkpoint.parameter_count(config) == sum(p.size for p in GPT(config).parameters())


@pytest.mark.parametrize("key, value, message", [
    ("n_layer", 10**6, "n_layer is 1,000,000; tinytorch loads 1 to 1,024"),
    ("n_layer", 10**9, "n_layer is 1,000,000,000; tinytorch loads 1 to 1,024"),
    ("n_embd", 10**30, "n_embd is more than 10^18; tinytorch loads 1 to 16,384"),
    ("n_embd", Raw("1" + "0" * 5000), "not valid JSON (Exceeds the limit (4300 digits)"),
    ("n_positions", 0, "n_positions is 0; tinytorch loads 1 to 65,536"),
    ("vocab_size", 2.5, "vocab_size must be a whole number, got 2.5"),
    ("layer_norm_epsilon", Raw("1e999"), "layer_norm_epsilon must be a positive number, got inf"),
], ids=["n_layer 1e6", "n_layer 1e9", "n_embd 1e30", "n_embd 1e5000", "n_positions 0", "vocab_size 2.5", "epsilon inf"])
def test_sizes_beyond_their_bounds_are_refused_before_any_allocation(folder, monkeypatch, capsys, key, value,
                                                                     message):
    edit_config(folder, **{key: value})

    def must_not_run(*args, **kwargs):
        raise AssertionError("allocated before the config was checked")

    monkeypatch.setattr(checkpoint, "expected_shapes", must_not_run)
    monkeypatch.setattr(checkpoint, "read_tensor_index", must_not_run)
    with pytest.raises(CheckpointError, match=re.escape(f"config.json: {message}")):
        GPT.from_pretrained(folder)
    assert message in one_line_error(capsys, "generate", folder, "ab")


def test_the_parameter_cap_is_computed_from_the_config(folder, monkeypatch):
    count = checkpoint.parameter_count(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2))
    assert GPT.from_pretrained(folder, max_parameters=count).config.n_layer == 2  # at the cap: loads
    monkeypatch.setattr(checkpoint, "read_tensor_index", lambda *a, **k: pytest.fail("read the weights"))
    with pytest.raises(CheckpointError, match=f"describes a model of {count:,} parameters; the limit here is "
                                              f"{count - 1:,}$"):
        GPT.from_pretrained(folder, max_parameters=count - 1)


def test_a_weights_file_larger_than_its_config_can_need_is_not_read(folder, monkeypatch):
    with open(folder / "model.safetensors", "ab") as handle:
        handle.write(b"\0" * 10_000_000)  # 10 MB more than a 2-layer, n_embd-8 model can need
    monkeypatch.setattr(checkpoint, "check_tensors", lambda *a, **k: pytest.fail("read the header"))
    with pytest.raises(CheckpointError, match=r"model\.safetensors: 10,0\d\d,\d+ bytes, more than the [\d,]+ that "
                                              r"config.json's model \([\d,]+ parameters\) can need$"):
        GPT.from_pretrained(folder)


# ================================================================== 3. the Hub: config first
def test_a_hub_repo_that_is_not_a_tinytorch_model_costs_one_small_download(hub_env, tmp_path, tokenizer):
    files = checkpoint_files(tmp_path, tiny_gpt(), tokenizer)
    llama = json.loads(files["config.json"])
    llama["model_type"] = "llama"
    hub_env.add_commit("me/llama", {"config.json": json.dumps(llama).encode(),
                                    "model.safetensors": b"\0" * 3_000_000})
    with pytest.raises(CheckpointError, match=r"^me/llama/config.json: model_type 'llama', expected 'gpt2'$"):
        GPT.from_pretrained("me/llama")
    fetched = [r.path for r in hub_env.requests if r.method == "GET" and "/resolve/" in r.path]
    assert fetched and all(p.endswith("/config.json") for p in fetched), fetched


def test_hub_weights_bigger_than_the_config_or_the_cap_are_never_fetched(hub_env, tmp_path, tokenizer):
    files = checkpoint_files(tmp_path, tiny_gpt(), tokenizer)
    hub_env.add_commit("me/padded", {**files, "model.safetensors": files["model.safetensors"] + b"\0" * 3_000_000})
    with pytest.raises(CheckpointError, match=r"^me/padded/model.safetensors: 3,0\d\d,\d+ bytes, more than the "
                                              r"[\d,]+ a tinytorch checkpoint of this size can need; not downloaded$"):
        tt_hub.download("me/padded")
    hub_env.add_commit("me/big", files)
    count = checkpoint.parameter_count(GPTConfig(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2))
    with pytest.raises(CheckpointError, match=f"^me/big/config.json: describes a model of {count:,} parameters; "
                                              f"the limit here is 1,000$"):
        tt_hub.download("me/big", max_parameters=1000)
    weights = [r for r in hub_env.requests if r.method == "GET" and r.path.endswith("model.safetensors")]
    assert weights == []
    assert (tt_hub.download("me/big") / "model.safetensors").is_file()  # the cap was all that stopped it


# ================================================================== 6. non-finite weights
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights_are_refused_naming_the_tensor(folder, capsys, bad, tmp_path):
    state = tiny_gpt(seed=3).state_dict()
    state["transformer.h.1.mlp.c_fc.weight"][2, 3] = bad
    write_weights(folder / "model.safetensors", state)
    message = ("model.safetensors: tensor transformer.h.1.mlp.c_fc.weight holds 1 NaN or infinite value(s) "
               "of 256; the checkpoint is damaged")
    with pytest.raises(CheckpointError, match=message.replace("(", r"\(").replace(")", r"\)")):
        GPT.from_pretrained(folder)
    assert message in one_line_error(capsys, "generate", folder, "ab")
    (tmp_path / "text.txt").write_text("abcabc\n" * 5)
    assert message in one_line_error(capsys, "eval", folder, tmp_path / "text.txt")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning", "ignore:invalid value:RuntimeWarning")
def test_finite_weights_whose_outputs_overflow_are_refused(folder, capsys):
    state = tiny_gpt(seed=3).state_dict()
    state["transformer.ln_f.weight"][:] = 3e38  # finite float32 (at most 3.4e38), but the logits,
    state["transformer.wte.weight"] *= 100  # ln_f(x) @ wte.T, overflow to inf
    write_weights(folder / "model.safetensors", state)
    with pytest.raises(CheckpointError, match=r"the weights are finite but so large that the model's outputs "
                                              r"overflow \(NaN or infinite logits\)"):
        GPT.from_pretrained(folder)


def test_eval_prints_valid_json(folder, capsys, tmp_path):
    (tmp_path / "text.txt").write_text("abcabc\n" * 5)
    status, out, _ = run(capsys, "eval", folder, tmp_path / "text.txt")

    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON")

    assert status == 0 and math.isfinite(json.loads(out, parse_constant=refuse)["bits_per_char"])


# ================================================================== 9. one line, never a traceback
def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_a_deeply_nested_config_is_one_line(folder, tmp_path, depth):
    values = json.loads((folder / "config.json").read_text())
    text = json.dumps({**values, "provenance": "X"}).replace('"X"', nested(depth))
    (folder / "config.json").write_text(text)
    with pytest.raises(CheckpointError, match=r"config.json: nested more than 32 levels deep"):
        GPT.from_pretrained(folder)
    done = run_subprocess(tmp_path, "generate", folder, "ab", "--max-new-tokens", 1)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "nested more than 32 levels deep" in done.stderr


def test_provenance_nested_as_fine_tunes_nest_it_loads(folder):
    values = json.loads((folder / "config.json").read_text())
    provenance = {"steps": 1}
    for _ in range(20):  # a fine-tune of a fine-tune of ...: each keeps its base's provenance
        provenance = {"fine_tuned_from": "x", "base_provenance": provenance}
    (folder / "config.json").write_text(json.dumps({**values, "provenance": provenance}))
    assert GPT.from_pretrained(folder).config.n_layer == 2


def test_a_huge_config_is_not_read(folder):
    values = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**values, "provenance": "x" * 2_000_000}))
    with pytest.raises(CheckpointError, match=r"config.json: 2,00\d,\d+ bytes; a checkpoint's config.json is at "
                                              r"most 1,000,000$"):
        GPT.from_pretrained(folder)


def test_tab_size_1e300_from_the_cli_is_one_line(folder, tmp_path):
    edit_config(folder, tab_size=1e300)
    done = run_subprocess(tmp_path, "generate", folder, "\tx", "--max-new-tokens", 1)
    assert done.returncode == 1 and "Traceback" not in done.stderr and done.stderr.count("\n") == 1
    assert "tab_size must be a whole number from 1 to 16, got 1e+300" in done.stderr
