"""The pretraining pipeline end to end, on tiny models and a small corpus, in seconds."""

import json
import os
import signal

import numpy as np
import pytest

import pretrain.engine
from pretrain.__main__ import run
from tasks.level1 import DEFAULT_TASKS
from tinytorch import pretrained
from tinytorch.nn import GPT

CODE = '''def add_numbers(first, second):
    """Return the sum of two numbers."""
    return first + second


class Counter:
    def __init__(self, start=0):
        self.value = start

    def increment(self, amount=1):
        self.value += amount
        return self.value
'''


@pytest.fixture
def corpus(tmp_path):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for i in range(6):
        (folder / f"module_{i}.py").write_text(CODE.replace("Counter", f"Counter{i}") * 3)
    return folder


def tiny_copilot_args(corpus, out, steps=20):
    return ["copilot-tiny", "--corpus", str(corpus), "--out", str(out), "--steps", str(steps),
            "--n-embd", "16", "--n-layer", "1", "--n-head", "2", "--n-positions", "16", "--batch-size", "4",
            "--warmup-steps", "2", "--eval-every", "10", "--save-every", "5", "--log-every", "1",
            "--eval-chars", "2000", "--eval-identifiers", "5", "--quiet", "--keep", "2"]


def train_records(out):
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()
            if json.loads(line)["kind"] == "train"]


def test_level1_trains_to_every_pair_and_exports(tmp_path):
    export = tmp_path / "level1"
    assert run(["level1", "--out", str(tmp_path / "run"), "--export", str(export), "--quiet"]) == 0
    model, tok = pretrained.load(export)
    for given, expected in DEFAULT_TASKS:
        prompt = tok.encode(given + ">")
        assert tok.decode(model.generate(prompt, 4, temperature=0.0)[len(prompt):]) == expected
    assert (export / "tasks.txt").read_text().splitlines()[0] == "FGHI>GHIJ"
    assert (export / "loss_curve.png").read_bytes()[:4] == b"\x89PNG"
    card = (export / "README.md").read_text()
    assert card.startswith("---\nlicense: mit") and "python -m pretrain level1" in card


def test_resumed_run_equals_uninterrupted_run(tmp_path, corpus, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert run(tiny_copilot_args(corpus, straight)) == 0

    real_step = pretrain.engine.train_step

    def interrupted(*args, step=None, **kwargs):
        if step == 11:  # Ctrl-C in the middle of the 12th step
            os.kill(os.getpid(), signal.SIGINT)
        return real_step(*args, step=step, **kwargs)

    monkeypatch.setattr(pretrain.engine, "train_step", interrupted)
    assert run(tiny_copilot_args(corpus, resumed)) == 0
    assert (resumed / "latest").read_text().strip() == "step-000012"
    monkeypatch.setattr(pretrain.engine, "train_step", real_step)
    assert run(tiny_copilot_args(corpus, resumed) + ["--resume"]) == 0

    a, b = train_records(straight), train_records(resumed)
    assert [r["step"] for r in b] == list(range(1, 21))
    assert [r["loss"] for r in a] == [r["loss"] for r in b]  # exactly: same data, same RNG
    final_a, final_b = GPT.from_pretrained(straight / "step-000020" / "model"), GPT.from_pretrained(resumed / "step-000020" / "model")
    for (name, x), y in zip(final_a.state_dict().items(), final_b.state_dict().values()):
        np.testing.assert_array_equal(x, y, err_msg=name)
    assert sorted(p.name for p in resumed.glob("step-*")) == ["step-000015", "step-000020"]  # --keep 2


def test_train_records_log_the_resident_memory(tmp_path, corpus):
    import resource

    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out, steps=3)) == 0
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    for record in train_records(out):  # this process's RSS then: below its peak so far, above numpy's size
        assert 20 < record["rss_mb"] <= peak_mb + 1


def test_copilot_export_has_card_metrics_and_figures(tmp_path, corpus):
    export = tmp_path / "export"
    assert run(tiny_copilot_args(corpus, tmp_path / "run") + ["--export", str(export)]) == 0
    config = json.loads((export / "config.json").read_text())
    provenance = config["provenance"]
    assert provenance["corpus"]["train_files"] + provenance["corpus"]["val_files"] == 6
    assert len(provenance["corpus"]["fingerprint"]) == 64 and "val_bits_per_char" in provenance
    evals = [json.loads(line) for line in (export / "metrics.jsonl").read_text().splitlines()
             if json.loads(line)["kind"] == "eval"]
    assert [r["step"] for r in evals] == [0, 10, 20]
    assert evals[-1]["val_bits_per_char"] == pytest.approx(evals[-1]["val_loss"] / np.log(2))
    assert "| step | val loss | bits/char |" in (export / "README.md").read_text()


@pytest.mark.parametrize("setup, message", [
    (lambda d: None, "no such tasks file"),
    (lambda d: (d / "tasks.txt").write_text("# nothing\n\n"), "no pairs found"),
    (lambda d: (d / "tasks.txt").write_text("FGHI>GHIJ\nabc>def\n"), "line 2"),
    (lambda d: (d / "tasks.txt").write_bytes(b"\xff\xfe\x00binary"), "cannot read it as text"),
])
def test_bad_tasks_file_fails_before_training(tmp_path, capsys, setup, message):
    setup(tmp_path)
    out = tmp_path / "run"
    assert run(["level1", "--tasks", str(tmp_path / "tasks.txt"), "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()


@pytest.mark.parametrize("setup, message", [
    (lambda d: d / "missing", "no such file or folder"),
    (lambda d: (d / "empty").mkdir() or d / "empty", "no .py or .txt files"),
    (lambda d: (d / "blob.txt").write_bytes(b"\xff\xd8\xff\x00" * 100) and d / "blob.txt", "not UTF-8 text"),
    (lambda d: (d / "short.py").write_text("x = 1\n") and d / "short.py", "give a larger --corpus"),
])
def test_bad_corpus_fails_before_training(tmp_path, capsys, setup, message):
    path = setup(tmp_path)
    out = tmp_path / "run"
    assert run(["copilot-tiny", "--corpus", str(path), "--out", str(out), "--quiet"]) == 2
    assert message in capsys.readouterr().err
    assert not (out / "metrics.jsonl").exists()


def test_diverging_run_stops_with_the_step_and_keeps_the_last_good_checkpoint(tmp_path, corpus, capsys):
    out = tmp_path / "run"
    args = tiny_copilot_args(corpus, out, steps=40) + ["--lr", "1e6", "--warmup-steps", "0", "--grad-clip", "0"]
    assert run(args) == 1
    err = capsys.readouterr().err
    assert "training diverged at step" in err and "learning rate" in err
    latest = (out / "latest").read_text().strip() if (out / "latest").exists() else None
    if latest:  # whatever was saved before the blow-up is complete and loadable
        model = GPT.from_pretrained(out / latest / "model")
        assert all(np.isfinite(v).all() for v in model.state_dict().values())
