"""pretrain/train.py reads top to bottom: the run state is one dataclass that trainer_state.json
round-trips, and the training loop is a short function with no closures and no `nonlocal`."""

import ast
import json
import math
from pathlib import Path

import pretrain.train
from pretrain.__main__ import run
from pretrain.train import RunState

from test_pretrain import corpus, tiny_copilot_args  # noqa: F401  (fixture)

SCRIPT = Path(pretrain.train.__file__)
# trainer_state.json beside the run state: the RNGs, the configs, the corpus and the optimizer's scalars
CONTEXT_KEYS = {"data_rng", "init_rng", "model_config", "train_config", "data_fingerprint", "optimizer"}


def test_trainer_state_json_is_the_run_state_and_its_context(tmp_path, corpus):  # noqa: F811
    out = tmp_path / "run"
    assert run(tiny_copilot_args(corpus, out, steps=7)) == 0  # saves at 5 and 7; logs every step
    stored = json.loads((out / "step-000007" / "trainer_state.json").read_text())
    state = RunState.from_dict(stored)
    assert (state.step, state.interval) == (7, [0.0, 0])  # the last step logged its interval and emptied it
    assert state.best_step in (0, 7) and math.isfinite(state.best_val_loss)
    evals = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert state.best_val_loss == min(r["val_loss"] for r in evals if r["kind"] == "eval")
    assert set(stored) == set(state.to_dict()) | CONTEXT_KEYS
    assert state.to_dict() == {k: stored[k] for k in state.to_dict()}


def test_run_state_round_trips_and_leaves_the_figures_to_the_next_evaluation():
    state = RunState(step=12, best_val_loss=2.5, best_step=10, elapsed=3.25, interval=[4.5, 2], evaluated=10,
                     figures={"val_loss": 2.5}, failed_saves=1, metrics_failing=True)
    saved = json.loads(json.dumps(state.to_dict()))
    assert saved == {"step": 12, "best_val_loss": 2.5, "best_step": 10, "elapsed": 3.25, "interval": [4.5, 2],
                     "evaluated": 10}
    assert RunState.from_dict(saved) == RunState(12, 2.5, 10, 3.25, [4.5, 2], 10)
    del saved["evaluated"]  # a step folder of an earlier version: no evaluation known
    assert RunState.from_dict(saved).evaluated == -1
    assert json.loads(json.dumps(RunState().to_dict(), allow_nan=True))["best_val_loss"] == math.inf


def test_the_training_loop_is_short_with_no_closures_and_no_nonlocal():
    tree = ast.parse(SCRIPT.read_text())
    functions = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    assert not [node for node in ast.walk(tree) if isinstance(node, ast.Nonlocal)]
    for name in ("main", "train", "resume", "evaluate", "save"):
        nested = [n.name for n in ast.walk(functions[name]) if isinstance(n, ast.FunctionDef) and n is not functions[name]]
        assert nested == [], f"{name} defines {nested} inside"
    train = functions["train"]
    loop = next(node for node in ast.walk(train) if isinstance(node, ast.While))
    assert train.end_lineno - train.lineno < 60 and loop.end_lineno - loop.lineno < 25  # on one screen
