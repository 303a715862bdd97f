"""A run folder is never lost: not to a rerun, a resume with other flags, a second run on the same
folder, a full disk, a damaged checkpoint, or an export target that would be refused."""

import json
import os
import shlex
import signal
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors import SafetensorError

import pretrain.engine
from pretrain.__main__ import run
from tinytorch.nn import GPT

from test_pretrain import corpus, tiny_copilot_args, train_records  # noqa: F401  (fixture)
from test_pretrain_reliability import args_for, start


def listing(out: Path) -> dict:
    """Every file under `out` (but the lock) with its bytes."""
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".lock"}


def final_weights(out: Path, step: int) -> dict:
    return GPT.from_pretrained(out / f"step-{step:06d}" / "model").state_dict()


def assert_same_run(a: Path, b: Path, steps: int):
    """b logged every step once, with a's losses, and ended with a's weights, bit for bit."""
    ra, rb = train_records(a), train_records(b)
    assert [r["step"] for r in rb] == list(range(1, steps + 1))
    assert [r["loss"] for r in ra] == [r["loss"] for r in rb]
    wa, wb = final_weights(a, steps), final_weights(b, steps)
    for name in wa:
        np.testing.assert_array_equal(wa[name], wb[name], err_msg=name)


def interrupt_at(monkeypatch, at: int):
    """Ctrl-C in the middle of step `at` (counting from 0)."""
    real_step = pretrain.engine.train_step

    def interrupted(*args, step=None, **kwargs):
        if step == at:
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args, step=step, **kwargs)

    monkeypatch.setattr(pretrain.engine, "train_step", interrupted)
    return real_step


# ================================================================== a rerun without --resume
def test_a_rerun_without_resume_is_refused_and_overwrite_starts_over(tmp_path, corpus, capsys):  # noqa: F811
    out, fresh = tmp_path / "run", tmp_path / "fresh"
    assert run(tiny_copilot_args(corpus, out, steps=20)) == 0
    before = listing(out)
    capsys.readouterr()

    assert run(tiny_copilot_args(corpus, out, steps=10)) == 2
    err = capsys.readouterr().err
    assert err == (f"error: {out} holds a run; continue it with: python -m pretrain copilot-tiny --resume --out {out} "
                   "(or start over with --overwrite, which deletes it)\n")
    assert listing(out) == before  # not a byte changed

    assert run(tiny_copilot_args(corpus, out, steps=10) + ["--overwrite"]) == 0
    assert f"--overwrite: deleted the run in {out}" in capsys.readouterr().err
    assert run(tiny_copilot_args(corpus, fresh, steps=10)) == 0
    # the old run is gone whole: only the new run's step folders, its metrics alone, latest on its last step
    assert sorted(p.name for p in out.glob("step-*")) == sorted(p.name for p in fresh.glob("step-*")) == \
        ["step-000005", "step-000010"]
    assert (out / "latest").read_text() == "step-000010\n"
    assert_same_run(fresh, out, 10)

    assert run(tiny_copilot_args(corpus, out, steps=10) + ["--overwrite", "--resume"]) == 2
    assert "give one of them" in capsys.readouterr().err


# ================================================================== the run's settings, stored
def test_resume_takes_the_stored_settings_and_sigint_says_what_to_type(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    flags = tiny_copilot_args(corpus, straight) + ["--lr", "0.01", "--seed", "7"]
    assert run(flags) == 0

    real_step = interrupt_at(monkeypatch, 11)
    assert run(tiny_copilot_args(corpus, resumed) + ["--lr", "0.01", "--seed", "7"]) == 0
    monkeypatch.setattr(pretrain.engine, "train_step", real_step)
    err = capsys.readouterr().err
    told = f"python -m pretrain copilot-tiny --resume --out {resumed}"
    assert f"SIGINT: saved step 12 to {resumed / 'step-000012'}; continue with: {told}\n" in err

    # typed as told, from another folder: not one model, data or schedule flag repeated
    monkeypatch.chdir(tmp_path / "corpus")
    assert run(shlex.split(told)[3:] + ["--quiet"]) == 0
    assert_same_run(straight, resumed, 20)
    assert json.loads((resumed / "settings.json").read_text())["lr"] == 0.01
    # the model remembers the recipe, not the short command that resumed it
    recipe = [json.loads((out / "step-000020" / "model" / "config.json").read_text())["provenance"]["command"]
              for out in (straight, resumed)]
    assert recipe[0] == recipe[1] and shlex.split(recipe[0])[3:] == [
        "copilot-tiny", "--n-embd", "16", "--n-layer", "1", "--n-positions", "16", "--corpus",
        str(corpus), "--steps", "20", "--batch-size", "4", "--lr", "0.01", "--warmup-steps", "2", "--seed", "7",
        "--eval-every", "10", "--eval-chars", "2000", "--eval-identifiers", "5", "--log-every", "1",
        "--save-every", "5", "--keep", "2"]


def test_resume_applies_a_changed_schedule_and_refuses_another_model(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    out = tmp_path / "run"
    real_step = interrupt_at(monkeypatch, 7)
    assert run(tiny_copilot_args(corpus, out, steps=20)) == 0
    monkeypatch.setattr(pretrain.engine, "train_step", real_step)
    capsys.readouterr()
    before = listing(out)

    refused = {
        "--n-embd": (["--n-embd", "32"], "started with --n-embd 16; a run keeps its model, data and seed: "
                                         "leave out --n-embd 32"),
        "--seed": (["--seed", "1"], "started with --seed 1337"),
        "--corpus": (["--corpus", str(tmp_path)], f"started with --corpus {corpus}"),
    }
    for flags, message in refused.values():
        assert run(["copilot-tiny", "--out", str(out), "--resume", "--quiet"] + flags) == 2
        assert message in capsys.readouterr().err
    assert run(["copilot", "--out", str(out), "--resume", "--quiet"]) == 2
    assert capsys.readouterr().err == (f"error: {out} holds a copilot-tiny run; continue it with: "
                                       f"python -m pretrain copilot-tiny --resume --out {out}\n")
    assert listing(out) == before

    assert run(["copilot-tiny", "--out", str(out), "--resume", "--steps", "12", "--n-embd", "16"]) == 0
    err = capsys.readouterr().err
    assert f"{out}: --steps 12 replaces the stored --steps 20\n" in err and "n-embd" not in err
    assert [r["step"] for r in train_records(out)][-1] == 12
    assert json.loads((out / "settings.json").read_text())["steps"] == 12  # the next resume keeps it


def test_a_run_begun_before_settings_json_resumes_with_its_checkpoint_settings(tmp_path, corpus, monkeypatch):  # noqa: F811
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(tiny_copilot_args(corpus, straight)) == 0
    real_step = interrupt_at(monkeypatch, 11)
    assert run(tiny_copilot_args(corpus, resumed)) == 0
    monkeypatch.setattr(pretrain.engine, "train_step", real_step)
    (resumed / "settings.json").unlink()  # as a run folder of an earlier version holds it
    assert run(["copilot-tiny", "--out", str(resumed), "--resume", "--quiet"]) == 0
    assert_same_run(straight, resumed, 20)


@pytest.mark.parametrize("content, message", [
    ('{"steps": 2', "not valid JSON"),
    ('{"steps": "20"}', "'steps' is \"20\", expected int"),
    ('{"lr": true}', "'lr' is true, expected float"),
    ("[]", "holds no settings object"),
])
def test_a_damaged_settings_json_is_one_line(tmp_path, corpus, capsys, content, message):  # noqa: F811
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out, steps=5)) == 0
    (out / "settings.json").write_text(content)
    capsys.readouterr()
    assert run(["copilot-tiny", "--out", str(out), "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out / 'settings.json'}: {message}") and err.count("\n") == 1


# ================================================================== one run per folder
def test_a_second_run_is_refused_and_told_who_holds_the_folder(tmp_path, corpus, capsys):  # noqa: F811
    from pretrain import run_lock

    out = tmp_path / "run"
    with run_lock.hold(out):
        started = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        assert run(tiny_copilot_args(corpus, out) + ["--resume"]) == 2
        err = capsys.readouterr().err
    assert err.startswith(f"error: {out} is in use by another run: pid {os.getpid()} on host {socket.gethostname()}, "
                          f"started {started}")
    assert "wait for it to finish, stop it" in err and err.count("\n") == 1
    assert sorted(os.listdir(out)) == [".lock"]  # the refused run wrote nothing

    # a lock file left by a run that was killed: its process is gone, so the lock is free
    (out / ".lock").write_text(json.dumps({"pid": 999999, "host": socket.gethostname(), "started": 0}))
    assert run(tiny_copilot_args(corpus, out, steps=5)) == 0
    assert (out / ".lock").read_text() == ""  # a run that ended names nobody


def test_killing_a_run_while_another_starts_on_its_folder(tmp_path, corpus):  # noqa: F811
    steps = 1500  # enough that the rounds end before the run does, however fast the machine
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert run(args_for(corpus, straight, steps)) == 0
    rng = np.random.default_rng(1)
    outcomes = []
    for attempt in range(6):
        logged = len(train_records(out)) if (out / "metrics.jsonl").exists() else 0
        first = start(args_for(corpus, out, steps) + ["--resume"])
        while first.poll() is None and (not (out / "metrics.jsonl").exists() or len(train_records(out)) <= logged):
            time.sleep(0.01)  # until it trains
        second = start(args_for(corpus, out, steps) + ["--resume"])
        if attempt % 2 == 0:  # the first is alive all along: the second is turned away, naming it
            assert second.wait(timeout=60) == 2
            err = second.stderr.read()
            assert f"is in use by another run: pid {first.pid} on host" in err, err
        else:  # the first is killed while the second starts: the second may win the folder, or be turned away
            time.sleep(rng.uniform(0.0, 0.5))
        assert first.poll() is None, f"the run ended before round {attempt}; make it longer"
        first.send_signal(signal.SIGKILL)
        first.wait()
        if second.poll() is None:
            time.sleep(rng.uniform(0.0, 0.5))
            second.send_signal(signal.SIGKILL)
        outcomes.append(second.wait())
    assert outcomes[::2] == [2, 2, 2], outcomes
    last = start(args_for(corpus, out, steps) + ["--resume"])
    assert last.wait(timeout=300) == 0, last.stderr.read()
    assert_same_run(straight, out, steps)  # every resume went on from a complete checkpoint


# ================================================================== a full disk, a damaged checkpoint
def test_a_save_failing_for_lack_of_space_warns_and_keeps_the_previous_checkpoint(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    import safetensors.numpy

    real_save_file = safetensors.numpy.save_file
    full = {"disk": False}

    def save_file(tensors, path, metadata=None):  # what safetensors raises when the disk is full
        if full["disk"]:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        return real_save_file(tensors, path, metadata=metadata)

    real_step = pretrain.engine.train_step

    def filling(*args, step=None, **kwargs):
        full["disk"] = step in (5, 6, 7)  # the disk is full while steps 6 to 8 are saved, then freed
        return real_step(*args, step=step, **kwargs)

    monkeypatch.setattr(safetensors.numpy, "save_file", save_file)
    monkeypatch.setattr(pretrain.engine, "train_step", filling)
    out = tmp_path / "run"
    assert run(args_for(corpus, out, 10) + ["--eval-every", "100"]) == 0
    err = capsys.readouterr().err
    assert "saving step 6 failed (No space left on device); step-000004 stays the latest" in err
    assert (out / "latest").read_text() == "step-000010\n"  # and training went on
    assert not list(out.glob(".step-*"))


def _truncate(path: Path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_state(**changes):
    def edit(folder: Path):
        path = folder / "trainer_state.json"
        state = json.loads(path.read_text())
        for key, value in changes.items():
            if value is None:
                del state[key]
            else:
                state[key] = value
        path.write_text(json.dumps(state))
    return edit


def _edit_optimizer(change):
    def edit(folder: Path):
        from safetensors.numpy import load_file

        from tinytorch.checkpoint import write_weights

        path = folder / "optimizer.safetensors"
        arrays = load_file(str(path))
        change(arrays)
        write_weights(path, arrays, dtype=None)
    return edit


def _nan(arrays):
    arrays["group0.exp_avg"][3] = np.nan


DAMAGE = {
    "truncated optimizer": (lambda f: _truncate(f / "optimizer.safetensors"),
                            "optimizer.safetensors: missing, truncated or corrupt"),
    "truncated weights": (lambda f: _truncate(f / "model" / "model.safetensors"), "truncated or corrupt safetensors"),
    "state not JSON": (lambda f: (f / "trainer_state.json").write_text('{"step": 2'), "not valid JSON"),
    "state without step": (_edit_state(step=None), "trainer_state.json: missing 'step'"),
    "step a string": (_edit_state(step="20"), "trainer_state.json: 'step' is \"20\", expected an integer"),
    "rng not a state": (_edit_state(data_rng={"seed": 1}), "'data_rng' is not a numpy random generator's state"),
    "folder gone": (lambda f: __import__("shutil").rmtree(f), "trainer_state.json: missing"),
    "step negative": (_edit_state(step=-5), "trainer_state.json: 'step' is -5, but the folder is step"),
    "best step ahead": (_edit_state(best_step=99), "'best_step' is 99, expected a step from 0 to"),
    "optimizer step": (_edit_state(optimizer={"step": -1}), "'optimizer' is {\"step\": -1}, expected its 'step' to be "
                                                           "the folder's"),
    "interval": (_edit_state(interval=[0, -1]), "'interval' is [0, -1], expected [loss sum, steps from 0 to"),
    "elapsed NaN": (_edit_state(elapsed=float("nan")), "'elapsed' is NaN, expected seconds >= 0"),
    "optimizer shape": (_edit_optimizer(lambda a: a.update({"group0.exp_avg": a["group0.exp_avg"][:3]})),
                        "optimizer state 'group0.exp_avg' is missing or has the wrong size"),
    "optimizer NaN": (_edit_optimizer(_nan), "optimizer.safetensors: tensor group0.exp_avg holds NaN or infinite"),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_resume_from_a_damaged_step_falls_back_to_the_newest_that_loads(tmp_path, corpus, capsys, monkeypatch,
                                                                       damage):  # noqa: F811
    straight, out = tmp_path / "straight", tmp_path / "run"
    assert run(tiny_copilot_args(corpus, straight)) == 0
    real_step = interrupt_at(monkeypatch, 16)
    assert run(tiny_copilot_args(corpus, out) + ["--keep", "3"]) == 0  # step-10, 15, 17 (+ the best)
    monkeypatch.setattr(pretrain.engine, "train_step", real_step)
    harm, message = DAMAGE[damage]
    harm(out / "step-000017")
    capsys.readouterr()
    assert run(tiny_copilot_args(corpus, out) + ["--resume"]) == 0
    err = capsys.readouterr().err
    assert f"warning: step-000017 is damaged or incomplete ({out / 'step-000017'}" in err and message in err
    assert "resuming from step-000015, the newest checkpoint that loads" in err
    assert_same_run(straight, out, 20)
    assert "step-000017" not in os.listdir(out)  # its steps ran again; it is not kept in place of a good one


@pytest.mark.parametrize("damage", ["state without step", "step a string", "truncated optimizer", "step negative",
                                    "optimizer shape"])
def test_no_step_that_loads_is_one_line_saying_so(tmp_path, corpus, capsys, damage):  # noqa: F811
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out, steps=5) + ["--save-every", "100"]) == 0
    harm, message = DAMAGE[damage]
    for folder in out.glob("step-*"):
        harm(folder)
    capsys.readouterr()
    assert run(tiny_copilot_args(corpus, out, steps=5) + ["--save-every", "100", "--resume"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {out}: no checkpoint loads; the newest: step-000005 is damaged or incomplete")
    assert message in err and err.endswith("start over with --overwrite\n") and err.count("\n") == 1


# ================================================================== the export target, before the first step
def test_an_export_target_it_would_refuse_is_refused_before_training(tmp_path, corpus, capsys):  # noqa: F811
    export, out = tmp_path / "mine", tmp_path / "run"
    export.mkdir()
    (export / "config.json").write_text("{}")
    (export / "notes.txt").write_text("mine")
    assert run(tiny_copilot_args(corpus, out) + ["--export", str(export)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {export}: is not a checkpoint folder") and "would delete notes.txt" in err
    assert not (out / "metrics.jsonl").exists() and (export / "notes.txt").read_text() == "mine"

    (export / "notes.txt").unlink(), (export / "config.json").unlink()
    assert run(tiny_copilot_args(corpus, out, steps=5) + ["--export", str(export)]) == 0
    assert run(tiny_copilot_args(corpus, out, steps=5) + ["--export", str(export), "--overwrite"]) == 0  # its own export
    assert sorted(os.listdir(export)) == ["README.md", "config.json", "loss_curve.png", "metrics.jsonl",
                                          "model.safetensors"]
