"""`python -m pretrain --engine torch` runs the numpy engine's recipe in PyTorch: the same losses
and weights (float64, to 1e-6), step folders that resume in either engine, DistributedDataParallel
under torchrun equal to one process, and an export that tinytorch loads.

CI installs torch (`make interop`); without it the tests that train in PyTorch skip, saying so.
"""

import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

import pretrain.engine
from pretrain.__main__ import run
from tinytorch.nn import GPT

from test_pretrain import corpus, train_records  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="PyTorch not installed: `make interop` adds it")

def args(corpus, out, engine, steps, *more):  # noqa: F811
    """A small run of the copilot-tiny recipe, every step logged, in float64."""
    return ["copilot-tiny", "--engine", engine, "--device", "cpu", "--dtype", "float64", "--corpus", str(corpus),
            "--out", str(out), "--steps", str(steps), "--warmup-steps", "5", "--log-every", "1",
            "--eval-chars", "2000", "--eval-identifiers", "5", "--quiet", *more]


def small(*more):
    """A smaller model than copilot-tiny's, for the tests that train several runs."""
    return ["--n-embd", "16", "--n-layer", "1", "--n-head", "2", "--n-positions", "16", "--batch-size", "4", *more]


def weights(out: Path, step: int) -> dict:
    """The step folder's weights as saved (float64 in a float64 run)."""
    return load_file(str(out / f"step-{step:06d}" / "model" / "model.safetensors"))


def assert_close_runs(a: Path, b: Path, steps: int, rtol: float):
    la, lb = [r["loss"] for r in train_records(a)], [r["loss"] for r in train_records(b)]
    assert len(la) == len(lb) == steps
    np.testing.assert_allclose(lb, la, rtol=rtol)
    wa, wb = weights(a, steps), weights(b, steps)
    assert wa.keys() == wb.keys()
    for name in wa:
        np.testing.assert_allclose(wb[name], wa[name], rtol=rtol, atol=rtol * np.abs(wa[name]).max(), err_msg=name)


def interrupt_at(monkeypatch, at: int):
    """Ctrl-C in the middle of step `at` (counting from 0), whichever engine runs it."""
    from pretrain.torch_engine import TorchEngine

    for engine in (pretrain.engine.NumpyEngine, TorchEngine):
        def interrupted(self, *a, step=None, _real=engine.train_step, **kw):
            if step == at:
                os.kill(os.getpid(), signal.SIGINT)
            return _real(self, *a, step=step, **kw)

        monkeypatch.setattr(engine, "train_step", interrupted)


# ================================================================== without torch
def test_without_torch_the_engine_says_how_to_install_it_and_touches_nothing(tmp_path, corpus, monkeypatch, capsys):  # noqa: F811
    monkeypatch.setitem(sys.modules, "torch", None)  # what `import torch` meets when it is not installed
    out = tmp_path / "run"
    assert run(args(corpus, out, "torch", 5)) == 2
    assert capsys.readouterr().err == ("error: PyTorch is not installed: run `make interop` (or pip install -e "
                                       "'.[interop]') for --engine torch\n")
    assert not out.exists()


def test_the_numpy_engine_never_imports_torch():
    code = "import sys, pretrain.__main__, pretrain.train, pretrain.engine; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout == "False\n"


# ================================================================== parity
@needs_torch
def test_torch_engine_equals_numpy_engine_for_50_steps_of_copilot_tiny(tmp_path, corpus):  # noqa: F811
    ours, theirs = tmp_path / "numpy", tmp_path / "torch"
    assert run(args(corpus, ours, "numpy", 50, "--eval-every", "25", "--save-every", "25")) == 0
    assert run(args(corpus, theirs, "torch", 50, "--eval-every", "25", "--save-every", "25")) == 0
    assert_close_runs(ours, theirs, 50, rtol=1e-6)
    evals = [[r["val_loss"] for r in map(json.loads, (o / "metrics.jsonl").read_text().splitlines())
              if r["kind"] == "eval"] for o in (ours, theirs)]
    assert len(evals[0]) == 3
    np.testing.assert_allclose(evals[1], evals[0], rtol=1e-6)  # the same evaluation, of the same weights
    # and AdamW's moments, saved in one layout by both engines
    for name, moment in load_file(str(ours / "step-000050" / "optimizer.safetensors")).items():
        other = load_file(str(theirs / "step-000050" / "optimizer.safetensors"))[name]
        np.testing.assert_allclose(other, moment, rtol=1e-6, atol=1e-6 * np.abs(moment).max(), err_msg=name)


# ================================================================== one step folder layout
@needs_torch
@pytest.mark.parametrize("first, second", [("numpy", "torch"), ("torch", "numpy")])
def test_a_run_started_by_one_engine_resumes_in_the_other(tmp_path, corpus, monkeypatch, first, second):  # noqa: F811
    straight, switched = tmp_path / "straight", tmp_path / "switched"
    assert run(args(corpus, straight, second, 40, *small("--eval-every", "20", "--save-every", "10"))) == 0
    interrupt_at(monkeypatch, 19)
    assert run(args(corpus, switched, first, 40, *small("--eval-every", "20", "--save-every", "10"))) == 0
    assert (switched / "latest").read_text() == "step-000020\n"
    monkeypatch.undo()
    assert run(["copilot-tiny", "--resume", "--out", str(switched), "--engine", second, "--quiet"]) == 0
    assert json.loads((switched / "settings.json").read_text())["engine"] == second
    assert_close_runs(straight, switched, 40, rtol=1e-6)


# ================================================================== export
@needs_torch
def test_the_exported_torch_model_loads_in_tinytorch_with_the_same_logits(tmp_path, corpus, monkeypatch):  # noqa: F811
    import torch

    engines = []
    real_create = pretrain.engine.create
    monkeypatch.setattr(pretrain.engine, "create", lambda *a: engines.append(real_create(*a)) or engines[-1])
    export = tmp_path / "export"
    assert run(args(corpus, tmp_path / "run", "torch", 12, *small("--dtype", "float32", "--eval-every", "6",
                                                                   "--export", str(export)))) == 0
    trainer_state = json.loads((tmp_path / "run" / "step-000012" / "trainer_state.json").read_text())
    assert trainer_state["best_step"] == 12  # so the export holds the torch model's last weights
    model, net = GPT.from_pretrained(str(export)), engines[0].net
    ids = np.random.default_rng(0).integers(0, model.config.vocab_size, (3, 16))
    with torch.no_grad():
        expected = net(torch.from_numpy(ids)).numpy()
    np.testing.assert_allclose(model(ids).data, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert (export / "loss_curve.png").exists() and "--engine torch" in (export / "README.md").read_text()


# ================================================================== torchrun
@needs_torch
def test_torchrun_on_two_processes_equals_one_process_on_the_whole_batch(tmp_path, corpus, monkeypatch):  # noqa: F811
    one, two = tmp_path / "one", tmp_path / "two"
    flags = small("--batch-size", "8", "--eval-every", "6", "--save-every", "3")  # float64: the sums, not their rounding
    assert run(args(corpus, one, "torch", 6, *flags)) == 0
    # one process trains steps 0-2, then torchrun resumes: the data order does not depend on the ranks
    interrupt_at(monkeypatch, 2)
    assert run(args(corpus, two, "torch", 6, *flags)) == 0
    assert (two / "latest").read_text() == "step-000003\n"
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    done = subprocess.run(torchrun + ["-m", "pretrain", "copilot-tiny", "--resume", "--out", str(two)],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.count(f"resuming {two} at step 3") == 1  # said once, by rank 0
    assert_close_runs(one, two, 6, rtol=1e-5)


# ================================================================== CUDA options, divergence
@needs_torch
def test_cuda_options_on_a_cpu_are_said_and_left_out(tmp_path, corpus, capsys):  # noqa: F811
    plain, flagged = tmp_path / "plain", tmp_path / "flagged"
    assert run(args(corpus, plain, "torch", 4, *small("--eval-every", "4", "--save-every", "4"))) == 0
    capsys.readouterr()
    assert run(args(corpus, flagged, "torch", 4, *small("--eval-every", "4", "--save-every", "4",
                                                          "--compile", "--bf16"))) == 0
    err = capsys.readouterr().err
    assert "--compile is for CUDA; training on cpu in float64 without it\n" in err
    assert "--bf16 is for float32 training on CUDA; training on cpu in float64 without it\n" in err
    assert [r["loss"] for r in train_records(flagged)] == [r["loss"] for r in train_records(plain)]


@needs_torch
def test_a_diverging_torch_run_stops_before_the_update_and_says_why(tmp_path, corpus, capsys):  # noqa: F811
    out = tmp_path / "run"
    assert run(args(corpus, out, "torch", 20, *small("--lr", "1e9", "--warmup-steps", "0", "--grad-clip", "0",
                                                     "--save-every", "1", "--eval-every", "100",
                                                     "--dtype", "float32"))) == 1
    err = capsys.readouterr().err
    step = int(err.split("training diverged at step ")[1].split(":")[0])
    assert "is most likely too high: lower it (by 3-10x) and try again." in err
    assert (out / "latest").read_text() == f"step-{step:06d}\n"  # the last good step stays the latest
    assert all(np.isfinite(w).all() for w in weights(out, step).values())
