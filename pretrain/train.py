"""The pretraining run, top to bottom: config -> data -> model -> optimizer -> loop -> export."""

from __future__ import annotations

import math
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, fields
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tinytorch
from tinytorch import memory, threads
from tinytorch.checkpoint import check_replaceable
from tinytorch.nn import GPTConfig
from tinytorch.optim import cosine_lr
from tinytorch.text import CharTokenizer
from tinytorch.training import DivergenceError, sample_batch

from . import engine as engines
from . import run_files, run_lock, run_settings, run_state
from .config import TrainConfig, check as check_settings
from .evaluation import copilot_eval, level1_eval
from .report import export_checkpoint, export_files


class StopRequest:
    """Signal handler for SIGINT and SIGTERM: note the request, and let the loop save and exit at
    the next step boundary (a step cut in half, its batch drawn but its update not applied, could
    not be resumed exactly). A second signal stops at once."""

    def __init__(self):
        self.signal = None

    def __call__(self, signum, frame):
        if self.signal:
            raise KeyboardInterrupt
        self.signal = signal.Signals(signum).name


def build_data(cfg: TrainConfig):
    """(tokenizer, a function rng -> (x, y), evaluation function, data description)."""
    if cfg.model == "level1":
        from tasks.level1 import DEFAULT_TASKS, read_tasks, task_batch, task_tokenizer

        pairs = read_tasks(cfg.tasks) if cfg.tasks else DEFAULT_TASKS
        tokenizer = task_tokenizer()
        x, y = task_batch(pairs, tokenizer)
        # every step trains on all pairs; the rng is unused but kept for a uniform loop
        return tokenizer, (lambda rng: (x, y)), level1_eval(pairs, tokenizer), {"tasks": [f"{i}>{o}" for i, o in pairs]}

    from .corpus import load_corpus

    corpus = load_corpus(cfg.corpus, cfg.val_fraction)
    tokenizer = CharTokenizer.python()
    train_ids = np.array(tokenizer.encode("\n\n".join(t for _, t in corpus.train)), dtype=np.uint8)
    if len(train_ids) < cfg.n_positions + 2:
        raise ValueError(f"the training text has {len(train_ids)} characters; the context alone needs "
                         f"{cfg.n_positions + 1}: give a larger --corpus")

    def batches(rng):
        x, y = sample_batch(train_ids, cfg.batch_size, cfg.n_positions, rng)
        return x.astype(np.int64), y.astype(np.int64)

    return tokenizer, batches, copilot_eval(corpus.val, tokenizer, cfg), {"corpus": corpus.describe()}


def main(cfg: TrainConfig) -> int:
    """Train in the run folder, which this run holds alone until it exits (under torchrun, its
    leader holds it for every rank)."""
    out = run_settings.run_folder(cfg)
    check_settings(cfg)  # as typed: before the folder is touched
    engines.check(cfg, settled=False)
    group = engines.start_group()
    try:
        with ExitStack() as held:
            cfg = group.share(partial(take_run, cfg, out, held))  # the leader's settled settings, on every rank
            engines.check(cfg)  # a resumed run's stored engine and device
            with threads.num_threads(cfg.threads or threads.DEFAULT_THREADS):
                return train(cfg, out, group)
    finally:
        group.close()


def take_run(cfg: TrainConfig, out: Path, held: ExitStack) -> TrainConfig:
    """The leader's part: hold the run folder's lock (until `held` closes) and open the run."""
    held.enter_context(run_lock.hold(out))
    return open_run(cfg, out)


def open_run(cfg: TrainConfig, out: Path) -> TrainConfig:
    """Check the run folder and the export target before any training, and settle the settings:
    a new run's as given, a resumed run's as stored with the flags given again (said)."""
    run_state.check_writable(out)
    cfg = run_settings.with_absolute_paths(cfg)
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume continues the run, --overwrite deletes it: give one of them")
    run_state.check_foreign(out)  # a folder of the user's own files is never taken for a run
    resumed = False
    if run_state.holds_run(out):
        if cfg.overwrite:
            run_files.remove_run(out)
            print(f"--overwrite: deleted the run in {out}", file=sys.stderr)
        elif cfg.resume:
            cfg, changes = run_settings.resume(cfg, out)
            check_settings(cfg)  # as stored, with the flags given again
            for change in changes:
                print(f"{out}: {change}", file=sys.stderr)
            resumed = True
        else:
            raise ValueError(f"{out} holds a run; continue it with: {run_settings.resume_command(cfg)} "
                             "(or start over with --overwrite, which deletes it)")
    if cfg.export:
        run_state.check_writable(Path(cfg.export).parent)
        check_replaceable(cfg.export, files=export_files(cfg.model))
    if not (resumed and run_files.is_marked(out)):
        run_files.mark(out, cfg.model)  # a new run, or one begun before the marker existed
    run_settings.save(out, cfg)
    return cfg


@dataclass
class RunState:
    """Where the run stands: trainer_state.json keeps it (beside the RNGs and the configs), so that a
    resumed run continues exactly as an uninterrupted one would."""

    step: int = 0
    best_val_loss: float = math.inf
    best_step: int = 0
    elapsed: float = 0.0  # seconds of training, over every resume
    interval: list = field(default_factory=lambda: [0.0, 0])  # [sum of train losses, steps] since the last log
    evaluated: int = -1  # the step of the latest evaluation (-1: none)
    figures: dict = field(default_factory=dict)  # of the latest evaluation, for the saved model's provenance
    failed_saves: int = 0  # in a row: the disk stays full (see save)
    metrics_failing: bool = False  # the last metrics line could not be written (see record)

    def to_dict(self) -> dict:
        """The figures are not kept (the next evaluation gives them again), nor the write failures."""
        return {k: v for k, v in asdict(self).items() if k not in _NOT_SAVED}

    @classmethod
    def from_dict(cls, state: dict) -> RunState:
        """evaluated is absent from step folders of earlier versions."""
        return cls(**{f.name: state[f.name] for f in fields(cls) if f.name in state and f.name not in _NOT_SAVED})


_NOT_SAVED = ("figures", "failed_saves", "metrics_failing")


@dataclass
class Run:
    """What stays fixed while the run trains: its folder and settings, the engine (the model, its
    optimizer and step), the processes it runs in, and the data."""

    out: Path
    cfg: TrainConfig
    engine: engines.NumpyEngine  # or torch_engine.TorchEngine: the interface of pretrain/engine.py
    group: engines.OneProcess  # or torch_engine.TorchGroup under torchrun
    tokenizer: CharTokenizer
    next_batch: Callable  # rng -> (x, y), each (batch, n_positions) int64
    evaluator: Callable  # model -> the evaluation's figures
    data_rng: np.random.Generator
    provenance: dict  # written into every saved model's config.json

    @property
    def fingerprint(self) -> str | None:
        """Of the corpus, as the provenance records it; None for level1's tasks."""
        return self.provenance.get("corpus", {}).get("fingerprint")


def train(cfg: TrainConfig, out: Path, group) -> int:
    """config -> data -> engine (model, optimizer) -> resume -> loop -> export."""
    tokenizer, next_batch, evaluator, data_info = build_data(cfg)
    engine = engines.create(cfg, GPTConfig(vocab_size=tokenizer.vocab_size, n_positions=cfg.n_positions,
                                           n_embd=cfg.n_embd, n_layer=cfg.n_layer, n_head=cfg.n_head,
                                           dropout=cfg.dropout), group)
    provenance = {"model": cfg.model, "command": run_settings.command(cfg), "seed": cfg.seed,
                  "engine": cfg.engine, "hardware": engine.hardware(), "tinytorch_version": tinytorch.__version__,
                  **({"out": cfg.out} if cfg.out else {}), **data_info}
    run = Run(out, cfg, engine, group, tokenizer, next_batch, evaluator, np.random.default_rng(cfg.seed),
              provenance)
    state = resume(run)

    stop = StopRequest()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    bar = tqdm(total=cfg.steps, initial=state.step, desc=cfg.model, disable=cfg.quiet or not group.leader,
               dynamic_ncols=True)
    started = time.perf_counter() - state.elapsed
    try:
        if state.step == 0:
            evaluate(run, state)
        while state.step < cfg.steps and not stopped(run, state, stop, started):
            lr = cosine_lr(state.step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr)
            x, y = next_batch(run.data_rng)  # the global batch: every rank draws it, and trains on its shard
            t0 = time.perf_counter()
            loss, norm = engine.train_step(x, y, lr, cfg.grad_clip, step=state.step)
            state.step += 1
            state.elapsed = time.perf_counter() - started
            state.interval = [state.interval[0] + loss, state.interval[1] + 1]
            bar.update(1)
            last = state.step == cfg.steps
            if state.step % cfg.log_every == 0 or last:
                log(run, state, bar, lr, norm, seconds=time.perf_counter() - t0)
            if (state.step % cfg.eval_every == 0 or last) and (values := evaluate(run, state)):
                bar.write(_eval_line(values))
            if (state.step % cfg.save_every == 0 or last) and state.best_step != state.step:
                save(run, state)
        if cfg.export and state.evaluated != state.step:  # stopped between evaluations: the last step may be the best
            evaluate(run, state)
    except DivergenceError as err:  # on every rank at once: the loss and norm are the whole batch's
        latest = run_state.latest_step(out)
        where = f"the last good checkpoint, {latest}, stays the latest" if latest else "no checkpoint was saved yet"
        if group.leader:
            print(f"\nerror: {err} {where}.", file=sys.stderr)
        return 1
    except DiskFull:
        return 1
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if cfg.export and group.leader:
        export(cfg, out)
    return 0


def resume(run: Run) -> RunState:
    """The state to start from: step 0, or with --resume the newest checkpoint that loads, its
    weights, optimizer moments and RNG states put back. Every rank reads it; the leader then
    forgets what came after it."""
    out, cfg, leader = run.out, run.cfg, run.group.leader
    point = run_state.resume_point(out, load=partial(put_back, run)) if cfg.resume else None
    if point is None:
        if cfg.resume and leader:
            print(f"nothing to resume in {out}: starting from step 0", file=sys.stderr)
        if leader:
            (out / run_state.METRICS).unlink(missing_ok=True)  # of a run killed before its first checkpoint
        return RunState()
    latest, saved, passed_over = point
    for why in passed_over if leader else ():
        print(f"warning: {why}; resuming from {latest.name}, the newest checkpoint that loads", file=sys.stderr)
    state = RunState.from_dict(saved)
    run.group.barrier()  # every rank has read the step folder before the leader rewinds
    if not leader:
        return state
    run_state.rewind(out, latest)
    # the model card lists every interruption: where the run went on, and on what
    record(run, state, {"kind": "resume", "step": state.step, "engine": cfg.engine,
                        "hardware": run.provenance["hardware"]})
    print(f"resuming {out} at step {state.step}", file=sys.stderr)
    if state.step >= cfg.steps:
        print(f"the run is complete (--steps {cfg.steps}); to train longer: "
              f"{run_settings.resume_command(cfg)} --steps N", file=sys.stderr)
    return state


def put_back(run: Run, folder: Path) -> dict:
    """Put step folder `folder` back into the engine and the RNGs; returns its trainer state.
    A damaged folder raises ValueError (resume passes it over); one of another run, NotThisRun."""
    weights, arrays, saved = run_state.load_step(folder)
    config = run.engine.model.config.to_dict()
    if saved["model_config"] != config:
        raise run_state.NotThisRun(f"{folder}: trained with {saved['model_config']}, not {config}; "
                                   "resume with the same model flags or use another --out")
    if saved.get("data_fingerprint") != run.fingerprint:
        raise run_state.NotThisRun(f"{folder}: trained on another corpus (fingerprints differ); use another --out")
    try:
        run.engine.load(weights, arrays, saved["optimizer"])
    except ValueError as err:  # the weights were checked against the model above: the optimizer's layout
        raise ValueError(f"{folder}: {err}") from None
    run_state.restore_rng(run.data_rng, saved["data_rng"])
    run_state.restore_rng(tinytorch.rng.generator(), saved["init_rng"])
    return saved


class DiskFull(Exception):
    """Saving failed MAX_FAILED_SAVES times in a row: the run stops (the ranks agree) instead of
    training on with nothing kept."""


MAX_FAILED_SAVES = 3  # a disk filled for a moment (a save or two) does not stop a night's run


def stopped(run: Run, state: RunState, stop: StopRequest, started: float) -> bool:
    """Whether to end the loop before the next step: on a signal or a spent --hours (saved first).
    The ranks agree, so that they all stop at the same step. Raises DiskFull when saving keeps failing."""
    cfg = run.cfg
    spent = bool(cfg.hours) and time.perf_counter() - started > cfg.hours * 3600
    signalled, spent, full = run.group.agree(bool(stop.signal), spent, state.failed_saves >= MAX_FAILED_SAVES)
    if full:
        if run.group.leader:
            latest = run_state.latest_step(run.out)
            print(f"\nerror: saving failed {MAX_FAILED_SAVES} times in a row, so the run stops at step {state.step}; "
                  f"{latest.name if latest else 'no checkpoint'} is the latest checkpoint. Make room in {run.out}, "
                  f"then continue with: {run_settings.resume_command(cfg)}", file=sys.stderr)
        raise DiskFull
    if not (signalled or spent):
        return False
    saved = f"saved step {state.step} to {folder}" if (folder := save(run, state)) else "not saved"
    if run.group.leader and signalled:
        print(f"\n{stop.signal or 'a signal to another rank'}: {saved}; continue with: "
              f"{run_settings.resume_command(cfg)}", file=sys.stderr)
    elif run.group.leader:
        print(f"\nthe --hours budget of {cfg.hours:g} h is spent at step {state.step} ({saved}); continue with: "
              f"{run_settings.resume_command(cfg)} --hours {2 * cfg.hours:g}", file=sys.stderr)
    return True


def record(run: Run, state: RunState, values: dict) -> None:
    """One line of metrics.jsonl (the leader). A line that cannot be written (a full disk) is left
    out whole, said once until lines can be written again, and training goes on."""
    try:
        run_state.append_metrics(run.out, values)
    except OSError as err:
        if not state.metrics_failing:
            print(f"\nwarning: writing {run.out / run_state.METRICS} failed ({err.strerror or err}); training goes "
                  "on, and its records are left out until it can be written again", file=sys.stderr)
        state.metrics_failing = True
        return
    state.metrics_failing = False


def log(run: Run, state: RunState, bar: tqdm, lr: float, norm: float, seconds: float) -> None:
    """A train record of the mean loss since the last one; the bar shows it and this step's speed."""
    mean = state.interval[0] / state.interval[1]
    state.interval = [0.0, 0]
    if not run.group.leader:
        return
    record(run, state, {"kind": "train", "step": state.step, "loss": mean, "lr": lr, "grad_norm": norm,
                        "elapsed": round(state.elapsed, 2), "rss_mb": round(memory.rss_bytes() / 2**20, 1)})
    bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{run.cfg.batch_size * run.cfg.n_positions / max(seconds, 1e-9):,.0f}")


def evaluate(run: Run, state: RunState) -> dict | None:
    """Evaluate and record; a new best is saved at once, so its step folder exists to be exported.
    The leader evaluates (the engine's weights in tinytorch's GPT); the other ranks wait."""
    state.evaluated = state.step
    if not run.group.leader:
        run.group.barrier()
        return None
    with threads.blas(run.cfg.threads or threads.DEFAULT_THREADS):  # no step runs meanwhile: its cores are free
        values = {"kind": "eval", "step": state.step, **run.evaluator(run.engine.model)}
    record(run, state, values)
    state.figures = _figures(values)
    if values["val_loss"] < state.best_val_loss:
        state.best_val_loss, state.best_step = values["val_loss"], state.step
        save(run, state)
    run.group.barrier()
    return values


def save(run: Run, state: RunState) -> Path | None:
    """Save this step (the leader); on failure (disk full, ...) say why and keep the previous
    checkpoint, counting the failures in a row (see stopped)."""
    if not run.group.leader:
        return None
    trainer_state = {**state.to_dict(), "data_rng": run_state.rng_state(run.data_rng),
                     "init_rng": run_state.rng_state(tinytorch.rng.generator()),
                     "model_config": run.engine.model.config.to_dict(), "train_config": asdict(run.cfg),
                     "data_fingerprint": run.fingerprint}
    try:
        folder = run_state.save_step(run.out, state.step, run.engine.model, run.tokenizer, run.engine.optimizer_state(),
                                     trainer_state,
                                     {**run.provenance, "steps": state.step, **state.figures})
    except run_state.SAVE_ERRORS as err:
        state.failed_saves += 1
        latest = run_state.latest_step(run.out)
        print(f"\nwarning: saving step {state.step} failed ({run_state.why(err)}); "
              f"{latest.name if latest else 'no checkpoint'} stays the latest", file=sys.stderr)
        return None
    state.failed_saves = 0
    run_state.prune(run.out, run.cfg.keep, protect=run_state.step_name(state.best_step))
    return folder


def export(cfg: TrainConfig, out: Path) -> None:
    """The best model as a finished checkpoint folder at --export, and on the Hub with --push-to-hub."""
    command = run_settings.command(cfg)
    best = run_state.best_step(out)
    folder = export_checkpoint(out, Path(cfg.export), cfg, command)
    print(f"exported the best model by validation loss, step {run_files.step_number(best)}, to {folder}",
          file=sys.stderr)
    if cfg.push_to_hub:
        from tinytorch.pretrained import push_folder

        url = push_folder(folder, cfg.push_to_hub, commit_message=f"tinytorch pretrain: {command}")
        print(f"published {folder} to {url}", file=sys.stderr)


def _figures(record: dict) -> dict:
    keep = ("val_loss", "val_bits_per_char", "next_char_accuracy", "identifier_completion",
            "prompt_checks_right", "prompt_checks_total", "tasks_right", "tasks_total")
    return {k: record[k] for k in keep if k in record}


def _eval_line(record: dict) -> str:
    parts = [f"step {record['step']}"]
    for key, label in (("val_loss", "val loss"), ("val_bits_per_char", "bits/char"),
                       ("identifier_completion", "identifiers")):
        if key in record:
            parts.append(f"{label} {record[key]:.3f}")
    if "prompt_checks_right" in record:
        parts.append(f"prompts {record['prompt_checks_right']}/{record['prompt_checks_total']}")
    if "tasks_right" in record:
        parts.append(f"tasks {record['tasks_right']}/{record['tasks_total']}")
    return "  ".join(parts)
