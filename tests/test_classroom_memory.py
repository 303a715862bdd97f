"""The classroom server's memory, and what a session owns, tried as an attacker would: configs whose
attention or activations would exhaust the server, weights files padded with buffers, fine-tuned
copies by the hundred, fine-tunes that outlive a Load or Reset, a download racing a Reset, server
paths in outputs."""

import gc
import json
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from demos import common, copilot as copilot_module, finetune as finetune_module, work
from demos.common import COMPUTE, DemoError, ModelStore
from demos.copies import Copies
from demos.copilot import REPLACED, Copilot
from tinytorch import checkpoint
from tinytorch import hub as tt_hub
from tinytorch.checkpoint import CheckpointError, save_pretrained
from tinytorch.nn import GPT, GPTConfig
from tinytorch.text import CharTokenizer

from test_classroom_safety import app, files_of, folder, pytestmark, weight_downloads  # noqa: F401  (fixtures)
from test_demos import PANTRY, finetune
from test_hub import hub, hub_env  # noqa: F401  (fixtures)


# ================================================================== N1: what a request allocates
def test_a_config_whose_attention_would_exhaust_the_server_is_refused_before_its_weights(hub_env, folder):
    app = Copilot([str(folder)], store=ModelStore())  # 5M parameters: both configs are far below
    hub_env.add_commit("u/heads", files_of(folder, n_embd=16, n_head=16, n_positions=3000))
    hub_env.add_commit("u/deep", files_of(folder, n_embd=8, n_head=1, n_layer=1024, n_positions=32))
    with pytest.raises(DemoError, match=r"^Could not load 'u/heads': u/heads/config.json: n_layer 2, n_head 16, "
                                        r"n_embd 16 and context 3000 would need about [\d,]+ MB for one request "
                                        r"\(attention and activations\); this server allows 1,024 MB$"):
        app.load("u/heads")
    with pytest.raises(DemoError, match=r"^Could not load 'u/deep': u/deep/config.json: n_layer 1024, .* would need"):
        app.load("u/deep")
    assert weight_downloads(hub_env) == []


def test_the_request_bound_counts_what_the_copilot_does():
    """demos/work.py counts from the Copilot's own limits; the shipped copilots are far inside it."""
    assert (work.TRAIN_BATCH, work.TRAIN_CONTEXT) == (copilot_module.BATCH_RANGE[1], finetune_module.CONTEXT)
    for name in ("copilot", "copilot-tiny"):
        config = checkpoint.load_config(common.shipped(name))
        assert work.request_bytes(config) < work.MAX_REQUEST_MB * 2**20 / 4
    # the attention map of every layer over the full context is one of the terms
    big = GPTConfig(vocab_size=98, n_positions=512, n_embd=8, n_layer=64, n_head=8)
    assert work.request_bytes(big) >= 4 * 64 * 8 * 512 * 512


# ================================================================== N2: the weights file holds only what the model has
def padded_checkpoint(folder: Path, to: Path, bias) -> Path:
    """`folder` as a checkpoint whose weights file carries transformer.h.0.attn.bias = `bias`."""
    to.mkdir()
    for p in folder.iterdir():
        (to / p.name).write_bytes(p.read_bytes())
    state = GPT.from_pretrained(folder).state_dict()
    from safetensors.numpy import save_file

    save_file({**{k: np.ascontiguousarray(v) for k, v in state.items()}, "transformer.h.0.attn.bias": bias},
              str(to / "model.safetensors"))
    return to


def test_the_weights_limit_allows_no_room_for_mask_buffers():
    config = GPTConfig(vocab_size=98, n_positions=65536, n_embd=8, n_layer=2, n_head=2)  # 526K parameters
    assert checkpoint.parameter_count(config) < 600_000
    limit = checkpoint.max_weights_bytes(config)
    assert limit == checkpoint.max_header_bytes(config) + 8 * (checkpoint.parameter_count(config) + 98 * 8)
    assert limit < 6_000_000  # was 68 GB: n_positions^2 for each layer's mask


def test_a_mask_buffer_is_skipped_unread_and_a_big_one_refused(folder, tmp_path, monkeypatch):
    import safetensors.numpy

    small = padded_checkpoint(folder, tmp_path / "small", np.ones((1, 1, 4, 4), dtype=np.int8))
    monkeypatch.setattr(safetensors.numpy, "load_file", lambda *a, **k: pytest.fail("read the whole file"))
    read = []
    real_open = __import__("safetensors").safe_open

    class Recording:
        def __init__(self, *args, **kwargs):
            self.inner = real_open(*args, **kwargs)

        def __enter__(self):
            self.file = self.inner.__enter__()
            return self

        def __exit__(self, *exc):
            return self.inner.__exit__(*exc)

        def __getattr__(self, name):
            return getattr(self.file, name)

        def get_tensor(self, name):
            read.append(name)
            return self.file.get_tensor(name)

    monkeypatch.setattr("safetensors.safe_open", Recording)
    model = GPT.from_pretrained(small)
    assert "transformer.h.0.attn.bias" not in read and "transformer.wte.weight" in read
    assert np.array_equal(model.state_dict()["transformer.wte.weight"],
                          GPT.from_pretrained(folder).state_dict()["transformer.wte.weight"])

    big = padded_checkpoint(folder, tmp_path / "big", np.zeros((1, 1, 512, 512), dtype=np.float32))  # 1 MB
    with pytest.raises(CheckpointError, match=r"model.safetensors: [\d,]+ bytes, more than the [\d,]+ that "
                                              r"config.json's model"):
        GPT.from_pretrained(big)


def test_a_padded_hub_repo_is_refused_before_its_weights_come(hub_env, folder, tmp_path):
    """A 75K-parameter config with a context of 4,096 and a 20 MB attn.bias: the old limit counted
    n_positions^2 per layer (270 MB) and let it through."""
    config = GPTConfig(vocab_size=98, n_positions=4096, n_embd=16, n_layer=2, n_head=2)
    source = save_pretrained(GPT(config), tmp_path / "src", tokenizer=CharTokenizer.python())
    padded = padded_checkpoint(source, tmp_path / "padded", np.zeros((5, 1024, 1024), dtype=np.float32))
    hub_env.add_commit("u/padded", {p.name: p.read_bytes() for p in padded.iterdir()})
    with pytest.raises(CheckpointError, match=r"^u/padded/model.safetensors: [\d,]+ bytes, more than the [\d,]+ a "
                                              r"tinytorch checkpoint of this size can need; not downloaded$"):
        tt_hub.download("u/padded", max_parameters=100_000)
    assert weight_downloads(hub_env) == []


# ================================================================== N3: gradients dropped, copies within a budget
def bytes_held(model) -> int:
    """Bytes of every distinct array buffer reachable from `model` (weights, gradients, anything)."""
    seen, buffers, todo = set(), {}, [model]
    while todo:
        obj = todo.pop()
        if id(obj) in seen or isinstance(obj, (type, str, bytes, int, float)):
            continue
        seen.add(id(obj))
        if isinstance(obj, np.ndarray):
            root = obj
            while isinstance(root.base, np.ndarray):
                root = root.base
            buffers[id(root)] = root.nbytes
            continue
        todo.extend(gc.get_referents(obj))
    return sum(buffers.values())


def test_a_fine_tuned_model_holds_its_weights_and_nothing_more(app):
    session = app.session(None)
    finetune(app, session, 10)
    model = session.model
    weights = sum(p.data.nbytes for p in model.parameters())
    assert all(p.grad is None for p in model.parameters())
    assert bytes_held(model) == weights  # no gradient buffer kept beside them (it was as large)


def test_copies_over_the_budget_go_to_disk_and_come_back_the_same(app, monkeypatch):
    sessions = [app.session(None) for _ in range(3)]
    finetune(app, sessions[0], 10)
    one = sessions[0].copy.nbytes
    pool = Copies(2.5 * one)  # room for two copies
    monkeypatch.setattr(copilot_module, "COPIES", pool)
    sessions[0].model = sessions[0].model  # counted in this budget
    finetune(app, sessions[1], 10, text=PANTRY[:2000])
    first = {k: v.copy() for k, v in sessions[0].model.state_dict().items()}
    expected = app.generate("def ", session=sessions[0])[1]["completion"]
    time.sleep(0.01)
    sessions[1].last_used = time.monotonic()  # the first session is the idlest
    finetune(app, sessions[2], 10, text=PANTRY[:3000])
    assert pool.held() <= pool.budget and pool.spills == 1
    assert not sessions[0].copy.in_memory and (sessions[0].workdir / "spilled.safetensors").is_file()

    assert app.generate("def ", session=sessions[0])[1]["completion"] == expected  # back, the same
    for name, value in sessions[0].model.state_dict().items():
        np.testing.assert_array_equal(value, first[name])
    assert pool.held() <= pool.budget and not (sessions[0].workdir / "spilled.safetensors").exists()
    assert sum(s.copy.in_memory for s in sessions) == 2

    sessions[1].close()  # a session that leaves takes its copy out of the budget, from memory or disk
    assert pool.held() <= 2 * one and all(s.copy.in_memory for s in (sessions[0], sessions[2]))


def test_a_copy_being_trained_is_never_spilled_and_a_new_one_is_refused_with_a_message(app, monkeypatch):
    first, second = app.session(None), app.session(None)
    pool = Copies(1.5 * sum(p.data.nbytes for p in first.base.model.parameters()))  # room for one
    monkeypatch.setattr(copilot_module, "COPIES", pool)
    running = app.finetune(PANTRY, 30, 3e-3, 4, session=first)
    next(running)  # started: its copy exists and it is training
    with pytest.raises(DemoError, match=r"^The server holds as many fine-tuned models as its memory allows"):
        finetune(app, second, 10)
    assert second.model is None and first.copy.in_memory
    assert [u for u in running][-1][0].count("step 30/30")  # the first goes on to the end, untouched
    finetune(app, second, 10)  # once it has ended, its copy may go to disk
    assert not first.copy.in_memory and second.copy.in_memory


# ================================================================== N11: a run belongs to the weights it started on
def test_a_load_ends_the_fine_tune_of_the_old_weights(app, folder):
    session = app.session(None)
    run = app.finetune(PANTRY, 300, 3e-3, 4, session=session)
    next(run)
    while session.steps_trained < 2:
        next(run)
    app.load(str(folder), session)
    rest = list(run)
    assert len(rest) == 1 and REPLACED in rest[0][0]  # it stopped before its next step, and said why
    assert session.model is None and session.steps_trained == 0 and session.curve == []
    with pytest.raises(DemoError, match="Nothing to compare yet"):
        app.compare("", session=session)
    assert not session.runs.training


def test_a_reset_then_a_new_fine_tune_never_mixes_with_the_old_run(app):
    session = app.session(None)
    old = app.finetune(PANTRY, 300, 3e-3, 4, session=session)
    next(old)
    next(old)
    app.reset(session)
    new = finetune(app, session, 10)
    assert "step 10/10" in new[-1][0]
    curve, steps, weights = list(session.curve), session.steps_trained, session.model.state_dict()
    rest = list(old)  # resumed after the new run: it ends at once, writing nothing
    assert len(rest) == 1 and REPLACED in rest[0][0]
    assert session.curve == curve and [s for s, _ in curve] == list(range(1, 11)) and steps == 10
    for name, value in session.model.state_dict().items():
        np.testing.assert_array_equal(value, weights[name])


# ================================================================== N12: a download racing a reset
def test_a_download_queued_behind_the_lock_survives_a_reset(app, monkeypatch):
    monkeypatch.setattr(COMPUTE, "slots", 1)  # one pass at a time, as on a one-core server: the download must queue
    session = app.session(None)
    finetune(app, session, 10)
    tuned = {k: v.copy() for k, v in session.model.state_dict().items()}
    result = {}

    def download():
        try:
            result["archive"] = app.download(session)
        except Exception as err:  # noqa: BLE001 - what the student would have seen
            result["error"] = err

    with COMPUTE:  # another client's compare holds the lock
        thread = threading.Thread(target=download)
        thread.start()
        deadline = time.monotonic() + 60
        while not COMPUTE._queue:  # the download waits for its turn
            assert time.monotonic() < deadline
            time.sleep(0.01)
        app.reset(session)
    thread.join(60)
    assert "error" not in result, result
    with zipfile.ZipFile(result["archive"]) as archive:
        archive.extractall(session.workdir / "unzipped")
    model = GPT.from_pretrained(session.workdir / "unzipped" / "copilot-finetuned")
    for name, value in model.state_dict().items():  # the model it asked for, from before the reset
        np.testing.assert_array_equal(value, tuned[name])


# ================================================================== N13: no server paths in outputs
def test_the_zip_names_the_base_model_without_the_servers_path(folder, tmp_path):
    teacher = tmp_path / "some" / "teacher" / "dir" / "model"
    teacher.parent.mkdir(parents=True)
    teacher.symlink_to(folder, target_is_directory=True)
    app = Copilot([str(teacher)])
    session = app.session(None)
    finetune(app, session, 10)
    with zipfile.ZipFile(app.download(session)) as archive:
        config = archive.read("copilot-finetuned/config.json").decode()
        card = archive.read("copilot-finetuned/README.md").decode()
    assert json.loads(config)["provenance"]["fine_tuned_from"] == "model"
    assert str(tmp_path) not in config and str(tmp_path) not in card


def test_hub_errors_do_not_show_the_servers_hub_address(app, hub_env):
    with pytest.raises(DemoError) as err:
        app.load("me/missing")
    assert hub_env.endpoint not in str(err.value) and "127.0.0.1" not in str(err.value)
    assert str(err.value).startswith("Could not load 'me/missing': me/missing: no such model repo on the Hub, or it "
                                     "is private")
