"""Checkpoint folders: round trips, transformers compatibility, clear errors on corrupt input,
atomic saves, and nothing but JSON and safetensors ever opened."""

import json
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from tinytorch import checkpoint, locate
from tinytorch.checkpoint import CheckpointError, expected_shapes, save_pretrained
from tinytorch.files import replace_folder
from tinytorch.nn import GPT, GPTConfig
from tinytorch.text import CharTokenizer

from conftest import tiny_gpt

IDS = np.array([[2, 3, 4, 5, 6, 7, 8, 9], [9, 8, 7, 6, 5, 4, 3, 2]])  # (B, T) = (2, 8): the whole context


@pytest.fixture
def tokenizer():
    return CharTokenizer("abcdefgh\n")  # 9 chars + <pad>, <unk> = 11 ids: tiny_gpt's vocabulary


@pytest.fixture
def model():
    return tiny_gpt(seed=1)


@pytest.fixture
def folder(tmp_path, model, tokenizer):
    return save_pretrained(model, tmp_path / "ckpt", tokenizer=tokenizer, provenance={"steps": 3})


def logits(model):
    return model(IDS).data


def snapshot(folder):
    """Every file of a folder, name -> bytes: to show a failed load or save changed nothing."""
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


# ================================================================== round trips
def test_round_trip_gives_identical_weights_logits_and_tokenizer(model, tokenizer, folder):
    assert sorted(os.listdir(folder)) == ["README.md", "config.json", "model.safetensors"]
    loaded = GPT.from_pretrained(str(folder))
    assert loaded.config == model.config and not loaded.training
    assert list(loaded.state_dict()) == list(model.state_dict())
    for name, value in model.state_dict().items():
        assert loaded.state_dict()[name].dtype == np.float32
        np.testing.assert_array_equal(loaded.state_dict()[name], value, err_msg=name)
    np.testing.assert_array_equal(logits(loaded), logits(model.eval()))
    assert CharTokenizer.from_pretrained(folder) == tokenizer

    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["activation_function"] == "gelu_new"
    assert config["tie_word_embeddings"] is True and config["bos_token_id"] is None
    assert (config["vocab_size"], config["n_embd"], config["provenance"]) == (11, 8, {"steps": 3})
    assert load_file(str(folder / "model.safetensors")).keys() == model.state_dict().keys()
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlicense: mit\nlibrary_name: tinytorch\n") and '"steps": 3' in card


def test_tokenizer_alone_round_trips_and_model_save_keeps_it(tmp_path, model, tokenizer):
    tokenizer.save_pretrained(tmp_path / "ckpt")
    assert CharTokenizer.from_pretrained(tmp_path / "ckpt") == tokenizer
    model.save_pretrained(tmp_path / "ckpt")  # no tokenizer given: the one saved there is kept
    assert CharTokenizer.from_pretrained(tmp_path / "ckpt") == tokenizer
    np.testing.assert_array_equal(logits(GPT.from_pretrained(tmp_path / "ckpt")), logits(model.eval()))


def test_float16_and_float64_weights_load_as_float32(folder, model):
    weights = load_file(str(folder / "model.safetensors"))
    save_file({k: v.astype(np.float64) for k, v in weights.items()}, str(folder / "model.safetensors"))
    loaded = GPT.from_pretrained(folder)
    assert all(v.dtype == np.float32 for v in loaded.state_dict().values())
    np.testing.assert_array_equal(logits(loaded), logits(model.eval()))
    save_file({k: v.astype(np.float16) for k, v in weights.items()}, str(folder / "model.safetensors"))
    np.testing.assert_allclose(logits(GPT.from_pretrained(folder)), logits(model), atol=1e-2)


@pytest.mark.parametrize("values", [
    dict(vocab_size=11, n_positions=8, n_embd=8, n_layer=2, n_head=2),
    dict(vocab_size=98, n_positions=64, n_embd=48, n_layer=3, n_head=6),
])
def test_expected_shapes_are_the_models_own(values):
    config = GPTConfig(**values)
    assert expected_shapes(config) == {n: p.shape for n, p in GPT(config).named_parameters()}


def test_load_state_dict_of_another_config_names_the_tensor(model):
    other = tiny_gpt(n_embd=16)
    with pytest.raises(ValueError, match=r"transformer\.wte\.weight: checkpoint \(11, 16\), model \(11, 8\)"):
        model.load_state_dict(other.state_dict())


# ================================================================== transformers reads our folders, we read theirs
def test_transformers_loads_the_folder_with_the_same_logits(folder, model):
    torch = pytest.importorskip("torch", reason="PyTorch not installed: `make interop` adds it")
    transformers = pytest.importorskip("transformers", reason="transformers not installed: `make interop` adds it")

    hf = transformers.GPT2LMHeadModel.from_pretrained(str(folder)).eval()
    with torch.no_grad():
        theirs = hf(torch.tensor(IDS)).logits.numpy()
    np.testing.assert_allclose(theirs, logits(model.eval()), rtol=1e-4, atol=1e-4)

    # The way back: a folder transformers wrote loads here (its tied head and mask buffers are handled).
    hf.save_pretrained(folder.parent / "from-transformers")
    loaded = GPT.from_pretrained(folder.parent / "from-transformers")
    np.testing.assert_allclose(logits(loaded), theirs, rtol=1e-4, atol=1e-4)


# ================================================================== corrupt input: one clear error each
def rewrite_weights(change):
    def corrupt(folder):
        path = folder / "model.safetensors"
        weights = load_file(str(path))
        change(weights)
        save_file(weights, str(path))
    return corrupt


def rewrite_config(change):
    def corrupt(folder):
        path = folder / "config.json"
        values = json.loads(path.read_text())
        change(values)
        path.write_text(json.dumps(values))
    return corrupt


def truncate(folder):
    path = folder / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])


C_FC = "transformer.h.1.mlp.c_fc.weight"
CORRUPTIONS = {
    "truncated safetensors": (truncate, r"model\.safetensors: truncated or corrupt safetensors file"),
    "not safetensors at all": (lambda f: (f / "model.safetensors").write_bytes(b"\x80\x04garbage" * 10),
                               r"model\.safetensors: truncated or corrupt"),
    "wrong shape": (rewrite_weights(lambda w: w.update({C_FC: np.zeros((8, 16), np.float32)})),
                    rf"model\.safetensors: tensor {C_FC} has shape \(8, 16\), config\.json needs \(8, 32\)"),
    "wrong dtype": (rewrite_weights(lambda w: w.update({C_FC: w[C_FC].astype(np.int32)})),
                    rf"model\.safetensors: tensor {C_FC} has dtype I32, expected F32"),
    "missing tensor": (rewrite_weights(lambda w: w.pop("transformer.ln_f.bias")),
                       r"model\.safetensors: missing tensor transformer\.ln_f\.bias"),
    "unexpected tensor": (rewrite_weights(lambda w: w.update({"transformer.h.2.ln_1.weight": np.ones(8, np.float32)})),
                          r"model\.safetensors: unexpected tensor transformer\.h\.2\.ln_1\.weight"),
    "untied head": (rewrite_weights(lambda w: w.update({"lm_head.weight": np.ones((11, 8), np.float32)})),
                    r"lm_head\.weight differs from transformer\.wte\.weight"),
    "weights for another config": (rewrite_config(lambda c: c.update(n_layer=3)),
                                   r"model\.safetensors: missing tensor transformer\.h\.2\."),
    "bad JSON": (lambda f: (f / "config.json").write_text('{"vocab_size": 11,'), r"config\.json: not valid JSON"),
    "JSON but not an object": (lambda f: (f / "config.json").write_text("[1, 2]"),
                               r"config\.json: expected a JSON object, got list"),
    "missing size": (rewrite_config(lambda c: c.pop("n_embd")), r"config\.json: missing n_embd"),
    "another model type": (rewrite_config(lambda c: c.update(model_type="bert")), r"model_type 'bert'"),
    "impossible config": (rewrite_config(lambda c: c.update(n_head=3)), r"n_embd \(8\) must be a multiple of n_head"),
    "missing weights": (lambda f: (f / "model.safetensors").unlink(), r"model\.safetensors: missing"),
    "missing config": (lambda f: (f / "config.json").unlink(), r"config\.json: missing"),
    "vocabulary of another size": (rewrite_config(lambda c: c["tokenizer"].update(chars="abc")),
                                   r"config\.json: the tokenizer has 5 ids but vocab_size is 11"),
    "not a tokenizer": (rewrite_config(lambda c: c.update(tokenizer={"chars": 5})), r"bad 'tokenizer' entry"),
}


@pytest.mark.parametrize("corrupt, message", CORRUPTIONS.values(), ids=CORRUPTIONS.keys())
def test_corrupt_checkpoint_gives_a_clear_error_and_is_left_as_it_was(folder, corrupt, message):
    corrupt(folder)
    before = snapshot(folder)
    with pytest.raises(CheckpointError, match=message) as err:
        GPT.from_pretrained(folder)
    assert str(folder) in str(err.value) and "\n" not in str(err.value)
    assert snapshot(folder) == before  # loading never writes


def test_a_failed_save_leaves_the_existing_checkpoint_intact(folder, model, tokenizer):
    before = snapshot(folder)
    with pytest.raises(ValueError, match="tokenizer has 5 ids but the model's vocab_size is 11"):
        save_pretrained(tiny_gpt(seed=2), folder, tokenizer=CharTokenizer("abc"))
    with pytest.raises(ValueError, match="extra file name 'config.json'"):
        save_pretrained(tiny_gpt(seed=2), folder, extra_files={"config.json": "{}"})
    assert snapshot(folder) == before
    assert sorted(os.listdir(folder.parent)) == ["ckpt"]  # no temporary folders left behind


@pytest.fixture
def no_hub(monkeypatch):
    def download(*args, **kwargs):
        raise AssertionError("the Hub was consulted")

    monkeypatch.setattr("tinytorch.hub.download", download)


def test_resolve_says_which_names_are_neither_folder_nor_repo_id(tmp_path, monkeypatch, folder, no_hub):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    for name in ["copilot2", "checkpoints/copilot2", "./nope/x", "a/b/c", "https://x.y/z", "runs/copilot", "me/"]:
        with pytest.raises(CheckpointError) as err:
            GPT.from_pretrained(name)
        assert str(err.value) == (f"{name}: no such checkpoint folder (in {tmp_path}); shipped checkpoints: "
                                  "copilot, copilot-large, copilot-tiny, level1 (by name, from any folder); a Hub repo id looks "
                                  "like 'user/model'")
    with pytest.raises(CheckpointError, match="is a file"):
        GPT.from_pretrained(folder / "config.json")


@pytest.mark.parametrize("name", ["copilot-tiny", "checkpoints/copilot-tiny", "copilot-tiny/", "checkpoints/copilot-tiny/"])
def test_shipped_checkpoints_load_by_name_from_any_folder(tmp_path, monkeypatch, no_hub, name):
    shipped = Path(checkpoint.__file__).resolve().parents[1] / "checkpoints" / "copilot-tiny"
    monkeypatch.chdir(tmp_path)  # no checkpoints/ here
    assert locate.resolve(name) == shipped
    reference = GPT.from_pretrained(shipped)
    np.testing.assert_array_equal(logits(GPT.from_pretrained(name)), logits(reference))


def test_a_folder_in_the_working_directory_comes_before_a_shipped_name(tmp_path, monkeypatch, model, tokenizer):
    save_pretrained(model, tmp_path / "copilot", tokenizer=tokenizer)
    monkeypatch.chdir(tmp_path)
    assert locate.resolve("copilot") == Path("copilot")
    np.testing.assert_array_equal(logits(GPT.from_pretrained("copilot")), logits(model.eval()))


def test_the_folder_a_zip_was_unpacked_into_loads_too(tmp_path, model, tokenizer):
    """A zip holding copilot-finetuned/ and unpacked into downloads/: downloads/ names the checkpoint."""
    save_pretrained(model, tmp_path / "downloads" / "copilot-finetuned", tokenizer=tokenizer)
    (tmp_path / "downloads" / "__MACOSX").mkdir()  # what macOS's zip adds beside it
    np.testing.assert_array_equal(logits(GPT.from_pretrained(tmp_path / "downloads")), logits(model.eval()))
    assert CharTokenizer.from_pretrained(tmp_path / "downloads") == tokenizer
    (tmp_path / "downloads" / "another").mkdir()
    save_pretrained(model, tmp_path / "downloads" / "another", tokenizer=tokenizer)
    with pytest.raises(CheckpointError, match=r"downloads/config\.json: missing"):  # two: which one is meant?
        GPT.from_pretrained(tmp_path / "downloads")


# ================================================================== atomic saves
def test_a_save_interrupted_midway_leaves_the_previous_checkpoint(folder, model, monkeypatch):
    old_logits = logits(GPT.from_pretrained(folder))
    before = snapshot(folder)
    real_write_weights = checkpoint.write_weights

    def crash_midway(path, state):
        real_write_weights(path, state)  # a whole new model.safetensors exists in the temporary folder...
        path.write_bytes(path.read_bytes()[:50])  # ...then the writer dies partway through
        raise KeyboardInterrupt  # Ctrl-C: a BaseException, not an Exception

    monkeypatch.setattr(checkpoint, "write_weights", crash_midway)
    with pytest.raises(KeyboardInterrupt):
        save_pretrained(tiny_gpt(seed=2), folder)

    assert snapshot(folder) == before
    np.testing.assert_array_equal(logits(GPT.from_pretrained(folder)), old_logits)
    assert sorted(os.listdir(folder.parent)) == ["ckpt"]  # no .ckpt.tmp-* left

    monkeypatch.setattr(checkpoint, "write_weights", real_write_weights)  # the next save goes through
    new = tiny_gpt(seed=2)
    save_pretrained(new, folder)
    np.testing.assert_array_equal(logits(GPT.from_pretrained(folder)), logits(new.eval()))
    assert not np.array_equal(logits(new), old_logits)
    assert sorted(os.listdir(folder.parent)) == ["ckpt"]  # no .ckpt.old-* left either


def test_a_first_save_that_fails_leaves_nothing(tmp_path, model, monkeypatch):
    monkeypatch.setattr(checkpoint, "write_weights", lambda path, state: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        save_pretrained(model, tmp_path / "new")
    assert os.listdir(tmp_path) == []


def test_save_refuses_to_replace_a_folder_that_is_not_a_checkpoint(tmp_path, model):
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "notes.txt").write_text("mine")
    for target in [project, project / "notes.txt"]:
        with pytest.raises(CheckpointError, match="not a checkpoint folder"):
            save_pretrained(model, target)
    assert sorted(os.listdir(project)) == ["notes.txt", "src"] and (project / "notes.txt").read_text() == "mine"
    (tmp_path / "empty").mkdir()
    save_pretrained(model, tmp_path / "empty")  # an empty folder is fine
    assert (tmp_path / "empty" / "model.safetensors").exists()


def test_a_config_json_does_not_make_a_folder_replaceable(tmp_path, model, tokenizer):
    # A folder is ours when it holds nothing but a checkpoint's files and a model's config.json.
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    (mine / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=r"would delete notes.txt: choose a new or empty folder"):
        save_pretrained(model, mine)
    (mine / "notes.txt").unlink()
    with pytest.raises(CheckpointError, match=r"its config.json is not a model's"):
        save_pretrained(model, mine)  # `{}` alone: someone's config, not a checkpoint's
    assert os.listdir(mine) == ["config.json"] and (mine / "config.json").read_text() == "{}"

    ckpt = save_pretrained(model, tmp_path / "ckpt", tokenizer=tokenizer, extra_files={"metrics.jsonl": "{}\n"})
    save_pretrained(model, ckpt, tokenizer=tokenizer, extra_files={"metrics.jsonl": "[]\n"})  # ours: replaced
    assert (ckpt / "metrics.jsonl").read_text() == "[]\n"
    (ckpt / "notes.txt").write_text("mine")
    with pytest.raises(CheckpointError, match=r"would delete metrics.jsonl, notes.txt"):
        save_pretrained(model, ckpt, tokenizer=tokenizer)  # this save would not write them again
    assert (ckpt / "notes.txt").read_text() == "mine"

    tokenizer.save_pretrained(tmp_path / "tok")  # a folder holding a saved tokenizer is a checkpoint's
    save_pretrained(model, tmp_path / "tok")
    assert CharTokenizer.from_pretrained(tmp_path / "tok").vocab_size == tokenizer.vocab_size


def test_replace_folder_writes_nested_folders(tmp_path):
    # The pretraining script's step folders hold model/ beside the optimizer state.
    def write(folder):
        (folder / "model").mkdir()
        (folder / "model" / "a.json").write_text("{}")
        (folder / "state.json").write_text("{}")

    replace_folder(tmp_path / "step", write)
    replace_folder(tmp_path / "step", write)
    assert sorted(os.listdir(tmp_path / "step")) == ["model", "state.json"] and os.listdir(tmp_path) == ["step"]


# ================================================================== only JSON and safetensors are opened
class Bomb:
    """Unpickling this writes a file: the proof that something unpickled it."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (_touch, (self.marker,))


def _touch(path):
    open(path, "w").close()


def test_pickles_and_code_in_a_checkpoint_folder_are_never_opened(folder, tmp_path):
    marker = tmp_path / "EXECUTED"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(Bomb(marker)))
    (folder / "training_args.bin").write_bytes(pickle.dumps(Bomb(marker)))
    for name in ["__init__.py", "modeling_gpt.py", "tokenizer.py"]:
        (folder / name).write_text(f"open({str(marker)!r}, 'w').close()\n")

    opened = []

    def audit(event, args):
        if event == "open" and recording and isinstance(args[0], (str, bytes, os.PathLike)):
            opened.append(os.fsdecode(args[0]))

    recording = True
    sys.addaudithook(audit)  # hooks cannot be removed: `recording` switches this one off afterwards
    try:
        model = GPT.from_pretrained(folder)
        CharTokenizer.from_pretrained(folder)
    finally:
        recording = False

    assert model is not None and not marker.exists()
    inside = {os.path.basename(p) for p in opened if os.path.dirname(os.path.abspath(p)) == str(folder)}
    assert inside <= {"config.json", "model.safetensors"}, inside
    assert not any(str(folder) in str(getattr(m, "__file__", "")) for m in list(sys.modules.values()))
