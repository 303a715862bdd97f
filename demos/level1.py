"""The Level 1 demo's handlers: can a one-layer transformer memorize a dozen INPUT>OUTPUT pairs?

Evaluate shows each pair's greedy answer; Train (from the Level 1 checkpoint or from random
weights) streams the loss curve and evaluates at the end. Each session trains its own model.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

import tinytorch
from tasks.level1 import DEFAULT_TASKS, SEPARATOR, SHAPE, evaluate_tasks, parse_pair, read_tasks, task_batch, \
    task_tokenizer
from tinytorch.nn import GPT, GPTConfig
from tinytorch.training import DivergenceError

from . import training, views
from .common import COMPUTE, INIT, DemoError, ModelStore, as_float, as_int, check_source, clone, \
    shipped
from .curves import BITS, bits, curve_frame

CHECKPOINT = "level1"
FROM_CHECKPOINT, FROM_SCRATCH = "the Level 1 checkpoint", "random weights (from scratch)"
STEPS, STEPS_RANGE = 100, (1, 2000)
LR, LR_RANGE = 1e-2, (1e-5, 1.0)
MAX_PAIRS = 64


class Level1Session:
    def __init__(self):
        self.model = None
        self.origin = ""  # what its weights started from
        self.steps_trained = 0
        self.curve: list[tuple[int, float]] = []
        self.stop = threading.Event()
        self.last_used = time.monotonic()  # see demos/sessions.py: idle sessions are released

    def close(self):
        self.stop.set()
        self.model = None


def results_frame(results) -> pd.DataFrame:
    return pd.DataFrame({
        "input": [r["input"] for r in results],
        "expected": [r["expected"] for r in results],
        "answer": [r["answer"] for r in results],
        "right?": ["✓" if r["correct"] else "✗" for r in results],
    })


def results_view(results):
    """The results table with each answer on green (right) or red (wrong), for the page."""
    frame = results_frame(results)
    colors = ["background-color: #dcfce7; color: #14532d" if r["correct"] else
              "background-color: #fee2e2; color: #7f1d1d" for r in results]
    return frame.style.apply(lambda column: colors, subset=["answer", "right?"])


def accuracy_html(results, origin: str) -> str:
    right, total = sum(r["correct"] for r in results), len(results)
    kind = "ok" if right == total else "info" if right else "warn"
    return views.status(f'<span style="font-size: 22px; font-weight: 600;">{right}/{total} correct</span> '
                        f'({100 * right / max(total, 1):.0f}%) · model: {origin}', kind)


class Level1:
    def __init__(self, checkpoint: str | None = None, store: ModelStore | None = None):
        self.checkpoint = checkpoint or str(shipped(CHECKPOINT))
        self.store = store or ModelStore()

    # ------------------------------------------------------------------ the pairs
    def has_checkpoint(self) -> bool:
        try:
            self.store.get(self.checkpoint, [self.checkpoint])
            return True
        except DemoError:
            return False

    def default_pairs(self) -> list[tuple[str, str]]:
        """The checkpoint's tasks.txt, or the default dozen. Reads only that file (when the
        checkpoint is a local folder): the UI calls this while it is built, before anyone visits."""
        try:
            return read_tasks(Path(check_source(self.checkpoint, [self.checkpoint])) / "tasks.txt")
        except (DemoError, ValueError):
            return list(DEFAULT_TASKS)

    def default_table(self) -> pd.DataFrame:
        pairs = self.default_pairs()
        return pd.DataFrame({"input": [i for i, _ in pairs], "output": [o for _, o in pairs]})

    @staticmethod
    def pairs(table) -> list[tuple[str, str]]:
        """Pairs from the table (a DataFrame, or rows as lists from an API call); blank rows skipped.
        Lower case is accepted and made upper case."""
        if isinstance(table, pd.DataFrame):
            rows = table.values.tolist()
        elif isinstance(table, dict) and "data" in table:  # gradio's JSON form of a table
            rows = table["data"]
        elif isinstance(table, (list, tuple)):
            rows = list(table)
        elif isinstance(table, str):
            rows = [line.split(SEPARATOR) for line in table.splitlines()]
        else:
            raise DemoError("The pairs must be a table of two columns: input and output.")
        pairs = []
        for number, row in enumerate(rows, start=1):
            cells = ["" if c is None or (isinstance(c, float) and np.isnan(c)) else str(c).strip().upper()
                     for c in (list(row) + ["", ""])[:2]]
            if not any(cells):
                continue
            try:
                pairs.append(parse_pair(SEPARATOR.join(cells)))
            except ValueError as err:
                raise DemoError(f"Row {number}: {err}") from None
        if not pairs:
            raise DemoError("The table is empty: write at least one pair, like FGHI and GHIJ.")
        if len(pairs) > MAX_PAIRS:
            raise DemoError(f"{len(pairs)} pairs; at most {MAX_PAIRS}.")
        inputs = [i for i, _ in pairs]
        repeated = sorted({i for i in inputs if inputs.count(i) > 1})
        if repeated:
            raise DemoError(f"Input(s) {', '.join(repeated)} appear more than once; each input needs one answer.")
        return pairs

    # ------------------------------------------------------------------ models
    def tokenizer(self):
        try:
            return self.store.get(self.checkpoint, [self.checkpoint]).tokenizer
        except DemoError:
            return task_tokenizer()

    def fresh_model(self, start: str, seed: int = 0):
        """(a new model for this session, where it came from)."""
        if start == FROM_CHECKPOINT:
            try:
                loaded = self.store.get(self.checkpoint, [self.checkpoint])
            except DemoError as err:
                raise DemoError(f"{err} Train from random weights instead, or create the checkpoint with "
                                "`python -m pretrain level1`.") from None
            return clone(loaded.model), "the Level 1 checkpoint"
        if start != FROM_SCRATCH:
            raise DemoError(f"Start from {FROM_CHECKPOINT!r} or {FROM_SCRATCH!r}; got {start!r}.")
        try:
            config = self.store.get(self.checkpoint, [self.checkpoint]).model.config
        except DemoError:
            config = GPTConfig(vocab_size=task_tokenizer().vocab_size, **SHAPE)  # pretraining's shape
        with INIT:  # the init draws from tinytorch's global generator
            tinytorch.manual_seed(seed)
            model = GPT(config).eval()
        return model, f"random weights (seed {seed})"

    def session(self, session) -> Level1Session:
        session = session if isinstance(session, Level1Session) else Level1Session()
        session.last_used = time.monotonic()
        if session.model is None:
            start = FROM_CHECKPOINT if self.has_checkpoint() else FROM_SCRATCH
            session.model, session.origin = self.fresh_model(start)
        return session

    def card(self) -> str:
        try:
            loaded = self.store.get(self.checkpoint, [self.checkpoint])
        except DemoError:
            return ("_No Level 1 checkpoint here (create it with `python -m pretrain level1`): "
                    "train from random weights._")
        return views.model_card("The shipped Level 1 checkpoint", loaded.config, loaded.model.num_parameters(),
                                "_These are the checkpoint's figures; \"Start from\" picks it or random weights, "
                                "and Evaluate says how the model on this page does._")

    def answers(self, session, pairs):
        with COMPUTE:
            return evaluate_tasks(session.model, self.tokenizer(), pairs)

    # ------------------------------------------------------------------ handlers
    def evaluate(self, table, session=None):
        """Each pair's greedy answer; returns (results table, accuracy HTML, session)."""
        session = self.session(session)
        pairs = self.pairs(table)
        results = self.answers(session, pairs)
        return results_view(results), accuracy_html(results, session.origin), session

    def train(self, table, start=FROM_CHECKPOINT, steps=STEPS, lr=LR, seed=0, session=None):
        """Train a new model (from the checkpoint or random weights) on the pairs; yields
        (status HTML, loss curve, results table, accuracy HTML, session)."""
        pairs = self.pairs(table)
        steps = as_int(steps, "Steps", *STEPS_RANGE)
        lr = as_float(lr, "Learning rate", *LR_RANGE, hint=" Try 0.01.")
        seed = as_int(seed, "Seed", 0, 2**31 - 1)
        session = session if isinstance(session, Level1Session) else Level1Session()
        session.last_used = time.monotonic()
        model, origin = self.fresh_model(start, seed)
        tokenizer = self.tokenizer()
        x, y = task_batch(pairs, tokenizer)  # every pair in every step: there are only a dozen
        session.model, session.origin, session.curve = model, origin, []
        session.stop.clear()
        with COMPUTE:
            results = evaluate_tasks(model, tokenizer, pairs)
        starting = f"Training from {origin}: {steps} steps on {len(pairs)} pairs."
        shown, done = 0.0, None
        try:
            for done in training.train(model, lambda: (x, y), steps, lr, should_stop=session.stop.is_set,
                                       lock=COMPUTE):
                session.curve.append((done.step, done.loss))
                # the first update waits for the first step: it comes with a point to draw
                if done.step < steps and (done.step == 1 or done.elapsed - shown >= 0.2):
                    shown = done.elapsed
                    yield (views.progress(done.step, steps, bits(done.loss), done.elapsed, done.remaining,
                                          starting if done.step == 1 else "", unit=BITS),
                           curve_frame(session.curve, bits), results_view(results),
                           accuracy_html(results, origin + ", before training"), session)
        except DivergenceError as err:
            yield (views.status(f"<b>Training diverged; the weights are back where they started.</b> {err}", "warn"),
                   curve_frame(session.curve, bits), results_view(results), accuracy_html(results, origin), session)
            return
        trained = done.step if done else 0
        session.origin = f"{origin}, then {trained} steps"
        results = self.answers(session, pairs)
        right = sum(r["correct"] for r in results)
        summary = f"{right}/{len(results)} pairs right after {trained} steps."
        if done is not None:
            status = views.progress(done.step, steps, bits(done.loss), done.elapsed, 0.0, summary, done=True, unit=BITS)
        else:
            status = views.status("Stopped before the first step. " + summary, "warn")
        yield (status, curve_frame(session.curve, bits), results_view(results), accuracy_html(results, session.origin),
               session)

    def stop(self, session=None) -> None:
        if isinstance(session, Level1Session):
            session.stop.set()
