"""A run folder among a user's files, tried as a careless or hostile user would: a folder of their
own taken for a run, folders of theirs inside one, links planted where the kit writes, settings out
of range, a full disk, a Ctrl-C before the first evaluation. Nothing of the user's is lost or
overwritten, and every refusal is one line."""

import json
import os

import pytest

import pretrain.engine
from pretrain import run_files, run_state
from pretrain.__main__ import run
from tinytorch import pretrained

from test_pretrain import corpus, tiny_copilot_args, train_records  # noqa: F401  (fixture)
from test_pretrain_run_folder import interrupt_at, listing


def level1(out, steps=10, *flags):
    return ["level1", "--out", str(out), "--steps", str(steps), "--save-every", "5", "--eval-every", "5",
            "--log-every", "1", "--quiet", *map(str, flags)]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    return err


# ================================================================== a user's folder is not a run
def test_a_users_folder_is_never_taken_for_a_run(tmp_path, capsys):
    home = tmp_path / "H"
    (home / "step-photos").mkdir(parents=True)
    (home / "step-photos" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
    (home / "settings.json").write_text('{"theme":"dark"}')
    before = listing(home)
    for flags in ([], ["--resume"], ["--overwrite"]):
        assert run(level1(home) + flags) == 2
        err = one_line_error(capsys)
        assert err == (f"error: {home} holds files that are not a tinytorch run's (settings.json, step-photos/); a run "
                       "needs a new or empty folder: give another --out (nothing was changed)\n"), flags
        assert listing(home) == before  # not taken over, not deleted


def test_resume_and_overwrite_touch_only_the_kits_own_names(tmp_path, capsys):
    out = tmp_path / "run"
    assert run(level1(out)) == 0
    (out / "step-notes").mkdir()
    (out / "step-notes" / "todo.txt").write_text("mine")
    (out / "step-0001").mkdir()  # a name like the kit's, but not its exact one
    (out / "notes.txt").write_text("mine too")
    assert run(level1(out, 20, "--resume")) == 0
    assert run(level1(out, 10, "--overwrite")) == 0
    assert (out / "step-notes" / "todo.txt").read_text() == "mine" and (out / "step-0001").is_dir()
    assert (out / "notes.txt").read_text() == "mine too"
    assert [p.name for p in run_files.step_folders(out)] == ["step-000000", "step-000005", "step-000010"]


def test_a_run_begun_before_the_marker_still_resumes_and_is_marked(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    interrupt_at(monkeypatch, 6)
    assert run(level1(out, 10)) == 0
    (out / ".tinytorch-run").unlink()  # as a run folder of an earlier version holds it
    assert run_state.holds_run(out)  # by the kit's formats: latest names a step folder with its state
    monkeypatch.undo()
    assert run(level1(out, 10, "--resume")) == 0
    assert "resuming" in capsys.readouterr().err and run_files.is_marked(out)
    assert (out / "latest").read_text() == "step-000010\n"


# ================================================================== links planted where the kit writes
def test_links_planted_in_the_run_folder_are_never_written_through(tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"precious " * 100)
    locked = tmp_path / "L1"
    locked.mkdir()
    (locked / ".lock").symlink_to(victim)
    assert run(level1(locked)) == 2
    assert one_line_error(capsys) == (f"error: cannot write to the run folder {locked}: {locked / '.lock'}: a symbolic "
                                      "link, which tinytorch does not write through; remove it\n")
    assert victim.read_bytes() == b"precious " * 100

    out = tmp_path / "run"
    assert run(level1(out)) == 0
    for name in (".write-test", ".settings.json.tmp", ".latest.tmp", ".metrics.jsonl.tmp", ".tinytorch-run.tmp"):
        (out / name).symlink_to(victim)  # names the kit writes under, or once wrote under
    assert run(level1(out, 20, "--resume")) == 0
    assert victim.read_bytes() == b"precious " * 100
    assert not (out / ".settings.json.tmp").exists() and (out / ".write-test").is_symlink()

    (out / "metrics.jsonl").unlink()
    (out / "metrics.jsonl").symlink_to(victim)
    capsys.readouterr()
    assert run(level1(out, 20, "--resume")) == 2
    assert one_line_error(capsys).endswith(f"{out / 'metrics.jsonl'}: a symbolic link, which tinytorch does not "
                                           "write through; remove it\n")
    assert victim.read_bytes() == b"precious " * 100


def test_an_interrupted_write_never_leaves_a_link_or_a_stale_file_in_the_way(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("keep")
    (out / ".latest.tmp").symlink_to(victim)
    run_state.point_latest(out, "step-000005")
    assert (out / "latest").read_text() == "step-000005\n" and victim.read_text() == "keep"
    assert sorted(os.listdir(out)) == ["latest"]


# ================================================================== trainer_state values, --keep
def test_prune_never_deletes_the_latest_or_the_best(tmp_path):
    out = tmp_path / "run"
    for step in (5, 10, 15, 20):
        (out / run_files.step_name(step)).mkdir(parents=True)
    (out / "step-notes").mkdir()
    run_state.point_latest(out, "step-000010")  # a newer save failed after a rewind: latest is not the newest
    run_state.prune(out, keep=0, protect="step-000005")
    assert sorted(os.listdir(out)) == ["latest", "step-000005", "step-000010", "step-000020", "step-notes"]


def test_keep_0_is_refused_and_sigint_keeps_the_step_it_saved(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out) + ["--keep", "0"]) == 2
    assert one_line_error(capsys) == "error: --keep must be a whole number from 1 to 1,000,000, got 0\n"
    assert not out.exists()
    interrupt_at(monkeypatch, 6)
    assert run(tiny_copilot_args(corpus, out) + ["--keep", "1"]) == 0
    assert f"SIGINT: saved step 7 to {out / 'step-000007'}" in capsys.readouterr().err
    assert (out / "latest").read_text() == "step-000007\n" and (out / "step-000007" / "trainer_state.json").is_file()
    monkeypatch.undo()
    assert run(tiny_copilot_args(corpus, out) + ["--resume"]) == 0
    assert "resuming" in (err := capsys.readouterr().err) and "at step 7" in err


# ================================================================== settings out of range
@pytest.mark.parametrize("flags, message", [
    (["--save-every", "0"], "--save-every must be a whole number from 1 to 1,000,000,000, got 0"),
    (["--eval-every", "0"], "--eval-every must be a whole number from 1 to 1,000,000,000, got 0"),
    (["--log-every", "0"], "--log-every must be a whole number from 1 to 1,000,000,000, got 0"),
    (["--grad-clip", "-1"], "--grad-clip must be a number from 0 to 1e+06, got -1.0"),
    (["--n-layer", "1000000"], "--n-layer must be a whole number from 1 to 1,024, got 1000000"),
    (["--lr", "nan"], "--lr must be a number from 1e-12 to 1e+12, got nan"),
    (["--n-embd", "16384", "--n-head", "16", "--n-layer", "1024"],
     "--n-embd 16384, --n-layer 1024, --n-positions 16 make a model of 3,298,757,476,352 parameters; tinytorch "
     "builds at most 1,000,000,000"),
    (["--n-embd", "30", "--n-head", "4"], "--n-embd 30 must be a multiple of --n-head 4"),
])
def test_settings_out_of_range_are_one_line_before_anything_is_built(tmp_path, corpus, capsys, monkeypatch,  # noqa: F811
                                                                     flags, message):
    out = tmp_path / "run"
    monkeypatch.setattr(pretrain.engine, "initial_model", lambda *a: pytest.fail("built a model"))
    assert run(tiny_copilot_args(corpus, out) + flags) == 2
    assert one_line_error(capsys) == f"error: {message}\n"
    assert not out.exists()


@pytest.mark.parametrize("key, value, message", [
    ("save_every", 0, "'save_every' must be a whole number from 1 to 1,000,000,000, got 0"),
    ("n_layer", 10**6, "'n_layer' must be a whole number from 1 to 1,024, got 1000000"),
    ("keep", 0, "'keep' must be a whole number from 1 to 1,000,000, got 0"),
    ("engine", "jax", "'engine' must be one of numpy, torch, got 'jax'"),
])
def test_a_stored_setting_out_of_range_is_one_line_naming_the_file(tmp_path, corpus, capsys, monkeypatch,  # noqa: F811
                                                                    key, value, message):
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out, steps=5)) == 0
    settings = json.loads((out / "settings.json").read_text())
    (out / "settings.json").write_text(json.dumps({**settings, key: value}))
    before = listing(out)
    capsys.readouterr()
    monkeypatch.setattr(pretrain.engine, "initial_model", lambda *a: pytest.fail("built a model"))
    assert run(["copilot-tiny", "--out", str(out), "--resume"]) == 2
    assert one_line_error(capsys) == f"error: {out / 'settings.json'}: {message}\n"
    assert listing(out) == before


# ================================================================== a full disk
def test_a_full_disk_leaves_metrics_whole_and_training_goes_on(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    real_write = os.write
    full = {"disk": False}

    def write(fd, data):  # the kernel writes what fits, then says the disk is full
        if full["disk"] and len(data) > 8:
            real_write(fd, data[: len(data) // 2])
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    real_step = pretrain.engine.train_step

    def filling(*args, step=None, **kwargs):
        full["disk"] = 5 <= step < 9  # metrics lines of steps 6 to 9 do not fit
        return real_step(*args, step=step, **kwargs)

    monkeypatch.setattr(run_files.os, "write", write)
    monkeypatch.setattr(pretrain.engine, "train_step", filling)
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out)) == 0
    err = capsys.readouterr().err
    assert err.count(f"warning: writing {out / 'metrics.jsonl'} failed (No space left on device); training goes on") == 1
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]  # every line whole
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 10, 11, 12, 13, 14, 15, 16, 17,
                                                                    18, 19, 20]
    assert (out / "latest").read_text() == "step-000020\n"


def test_a_disk_that_stays_full_stops_the_run_with_the_resume_command(tmp_path, corpus, capsys, monkeypatch):  # noqa: F811
    def no_room(*args, **kwargs):
        raise OSError(28, "No space left on device")

    real_save = run_state.save_step
    real_step = pretrain.engine.train_step

    def filling(*args, step=None, **kwargs):
        monkeypatch.setattr(run_state, "save_step", no_room if step >= 6 else real_save)
        return real_step(*args, step=step, **kwargs)

    monkeypatch.setattr(pretrain.engine, "train_step", filling)
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out, steps=40) + ["--save-every", "2"]) == 1
    err = capsys.readouterr().err
    assert err.count("failed (No space left on device); step-000006 stays the latest") == 3
    assert err.endswith(f"error: saving failed 3 times in a row, so the run stops at step 12; step-000006 is the "
                        f"latest checkpoint. Make room in {out}, then continue with: python -m pretrain copilot-tiny "
                        f"--resume --out {out}\n")
    monkeypatch.undo()
    assert run(tiny_copilot_args(corpus, out, steps=40) + ["--save-every", "2", "--resume"]) == 0
    assert "at step 6" in capsys.readouterr().err
    assert [r["step"] for r in train_records(out)] == list(range(1, 41))


# ================================================================== Ctrl-C before the first evaluation, then --export
def test_ctrl_c_before_an_evaluation_exports_the_trained_step_not_the_random_one(tmp_path, corpus, capsys,  # noqa: F811
                                                                                 monkeypatch):
    out, export = tmp_path / "run", tmp_path / "exported"
    interrupt_at(monkeypatch, 14)
    args = tiny_copilot_args(corpus, out, steps=100) + ["--eval-every", "50", "--lr", "0.01", "--export", str(export)]
    assert run(args) == 0
    err = capsys.readouterr().err
    assert f"exported the best model by validation loss, step 15, to {export}" in err
    config = json.loads((export / "config.json").read_text())
    assert config["provenance"]["steps"] == 15
    assert "This folder holds the step with the lowest validation loss: step 15." in (export / "README.md").read_text()
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if '"eval"' in line]
    assert [r["step"] for r in evals] == [0, 15] and evals[1]["val_loss"] < evals[0]["val_loss"]
    model, _ = pretrained.load(export)
    assert model.config.n_embd == 16


def test_a_spent_hours_budget_saves_the_step_it_stops_at(tmp_path, corpus, capsys):  # noqa: F811
    import re

    out = tmp_path / "run"
    flags = ["--hours", "0.002", "--save-every", "100000", "--eval-every", "100000", "--log-every", "1000"]
    assert run(tiny_copilot_args(corpus, out, steps=100_000) + flags) == 0  # about 7 s
    err = capsys.readouterr().err
    stopped = re.search(r"the --hours budget of 0.002 h is spent at step (\d+) \(saved step \1 to (.*?)\); continue", err)
    assert stopped, err
    step = int(stopped.group(1))
    assert step > 0 and (out / "latest").read_text() == f"step-{step:06d}\n"
