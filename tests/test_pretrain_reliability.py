"""Pretraining survives being killed, stopped, and short of disk (issue: reliability)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import pretrain.run_state
from pretrain.__main__ import run
from tinytorch.nn import GPT

from test_pretrain import corpus, tiny_copilot_args, train_records  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent


def args_for(corpus, out, steps):
    return tiny_copilot_args(corpus, out, steps) + ["--save-every", "2", "--eval-every", "50"]


def start(args):
    return subprocess.Popen([sys.executable, "-m", "pretrain", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def assert_latest_is_complete(out: Path):
    pointer = out / "latest"
    if not pointer.exists():
        return None
    folder = out / pointer.read_text().strip()
    state = json.loads((folder / "trainer_state.json").read_text())
    model = GPT.from_pretrained(folder / "model")  # every tensor present, right shapes, not truncated
    assert all(np.isfinite(v).all() for v in model.state_dict().values())
    return state["step"]


def test_sigkill_at_random_moments_then_resume_equals_an_uninterrupted_run(tmp_path, corpus):  # noqa: F811
    steps = 800  # enough that 20 kills land before the end, however fast the machine
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    assert run(args_for(corpus, straight, steps)) == 0

    rng = np.random.default_rng(0)
    kills, progress = 0, []
    while kills < 20:
        logged = len(train_records(killed)) if (killed / "metrics.jsonl").exists() else 0
        proc = start(args_for(corpus, killed, steps) + ["--resume"])
        while proc.poll() is None and (not (killed / "metrics.jsonl").exists()
                                       or len(train_records(killed)) <= min(logged, steps - 1)):
            time.sleep(0.01)  # until the resumed run has trained at least one more step
        time.sleep(rng.uniform(0.0, 0.12))  # then at a random moment: mid-step, mid-save, mid-log
        if proc.poll() is not None:
            break  # finished before the kill
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        progress.append(assert_latest_is_complete(killed))
    proc = start(args_for(corpus, killed, steps) + ["--resume"])
    assert proc.wait(timeout=120) == 0, proc.stderr.read()

    assert kills == 20, f"the run finished after only {kills} kills; make it longer"
    done = [p for p in progress if p is not None]
    # each resume went on from the last save
    assert done == sorted(done) and len(set(done)) > 5, f"the latest step after each kill: {progress}"
    a, b = train_records(straight), train_records(killed)
    assert [r["step"] for r in b] == list(range(1, steps + 1)), f"logged steps: {[r['step'] for r in b]}"
    differ = [r["step"] for r, q in zip(a, b) if r["loss"] != q["loss"]]
    assert not differ, f"losses differ from the uninterrupted run's at steps {differ[:10]} (kills at {progress})"
    final_a = GPT.from_pretrained(straight / f"step-{steps:06d}" / "model").state_dict()
    final_b = GPT.from_pretrained(killed / f"step-{steps:06d}" / "model").state_dict()
    for name in final_a:
        np.testing.assert_array_equal(final_a[name], final_b[name], err_msg=name)
    assert not list(killed.glob(".step-*"))  # no temporary folder outlives a resume


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_save_say_where_and_exit_0(tmp_path, corpus, signum):  # noqa: F811
    out = tmp_path / "run"
    proc = start(args_for(corpus, out, 100000) + ["--save-every", "1000"])
    deadline = time.time() + 60
    while not (out / "metrics.jsonl").exists() or len(train_records(out)) < 5:
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.1)
    proc.send_signal(signum)
    assert proc.wait(timeout=60) == 0
    err = proc.stderr.read()
    step = assert_latest_is_complete(out)
    assert f"saved step {step} to {out / f'step-{step:06d}'}" in err and "--resume" in err
    assert step >= 5


def test_unwritable_output_folder_fails_before_training(tmp_path, corpus, capsys):  # noqa: F811
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert run(args_for(corpus, blocker / "run", 10)) == 2
    assert "cannot write to the run folder" in capsys.readouterr().err


def test_full_disk_fails_before_training(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    import shutil

    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 10**6, 10**6))
    assert run(args_for(corpus, tmp_path / "run", 10)) == 2
    assert "only 1 MB free" in capsys.readouterr().err
    assert not (tmp_path / "run" / "metrics.jsonl").exists()


def test_a_failed_save_mid_run_keeps_the_previous_checkpoint_and_says_why(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    real_save = pretrain.run_state.save_step

    def flaky(out, step, *args, **kwargs):
        if step == 6:
            raise OSError(28, "No space left on device")
        return real_save(out, step, *args, **kwargs)

    monkeypatch.setattr(pretrain.run_state, "save_step", flaky)
    out = tmp_path / "run"
    assert run(args_for(corpus, out, 8) + ["--eval-every", "100"]) == 0
    err = capsys.readouterr().err
    assert "saving step 6 failed (No space left on device); step-000004 stays the latest" in err
    assert (out / "latest").read_text().strip() == "step-000008"  # and training went on
