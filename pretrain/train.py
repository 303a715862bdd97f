"""The pretraining run, top to bottom: config -> data -> model -> optimizer -> loop -> export."""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

import tinytorch
from tinytorch import memory
from tinytorch.checkpoint import check_replaceable
from tinytorch.nn import GPT, GPTConfig
from tinytorch.optim import AdamW, cosine_lr, weight_decay_groups
from tinytorch.text import CharTokenizer
from tinytorch.training import DivergenceError, sample_batch, train_step

from . import run_lock, run_settings, run_state
from .config import TrainConfig
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
    """Train in the run folder, which this process holds alone until it exits."""
    out = run_settings.run_folder(cfg)
    with run_lock.hold(out):
        cfg = open_run(cfg, out)
        with memory.num_threads(cfg.threads or min(2, os.cpu_count() or 1)):
            return train(cfg, out)


def open_run(cfg: TrainConfig, out: Path) -> TrainConfig:
    """Check the run folder and the export target before any training, and settle the settings:
    a new run's as given, a resumed run's as stored with the flags given again (said)."""
    run_state.check_writable(out)
    cfg = run_settings.with_absolute_paths(cfg)
    if cfg.resume and cfg.overwrite:
        raise ValueError("--resume continues the run, --overwrite deletes it: give one of them")
    if run_state.holds_run(out):
        if cfg.overwrite:
            run_state.remove_run(out)
            print(f"--overwrite: deleted the run in {out}", file=sys.stderr)
        elif cfg.resume:
            cfg, changes = run_settings.resume(cfg, out)
            for change in changes:
                print(f"{out}: {change}", file=sys.stderr)
        else:
            raise ValueError(f"{out} holds a run; continue it with: {run_settings.resume_command(cfg)} "
                             "(or start over with --overwrite, which deletes it)")
    if cfg.export:
        run_state.check_writable(Path(cfg.export).parent)
        check_replaceable(cfg.export, files=export_files(cfg.model))
    run_settings.save(out, cfg)
    return cfg


def train(cfg: TrainConfig, out: Path) -> int:
    """config -> data -> model -> optimizer -> resume -> loop -> export."""
    command = run_settings.command(cfg)
    resume_command = run_settings.resume_command(cfg)

    # ---------------------------------------------------------------- data
    tokenizer, next_batch, evaluate, data_info = build_data(cfg)

    # ---------------------------------------------------------------- model and optimizer
    tinytorch.manual_seed(cfg.seed)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, n_positions=cfg.n_positions, n_embd=cfg.n_embd,
                       n_layer=cfg.n_layer, n_head=cfg.n_head, dropout=cfg.dropout)
    model = GPT(config)
    optimizer = AdamW(weight_decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    data_rng = np.random.default_rng(cfg.seed)

    def get_lr(step: int) -> float:
        return cosine_lr(step, cfg.lr, cfg.warmup_steps, cfg.steps, cfg.min_lr)

    # ---------------------------------------------------------------- resume
    step, best_val, best_step, elapsed, interval = 0, math.inf, 0, 0.0, [0.0, 0]
    point = run_state.resume_point(out) if cfg.resume else None
    if point is not None:
        latest, (weights, arrays, state), passed_over = point
        for why in passed_over:
            print(f"warning: {why}; resuming from {latest.name}, the newest checkpoint that loads", file=sys.stderr)
        if state["model_config"] != config.to_dict():
            raise ValueError(f"{latest}: trained with {state['model_config']}, not {config.to_dict()}; "
                             "resume with the same model flags or use another --out")
        if state.get("data_fingerprint") != data_info.get("corpus", data_info).get("fingerprint", None) and cfg.model != "level1":
            raise ValueError(f"{latest}: trained on another corpus (fingerprints differ); use another --out")
        model.load_state_dict(weights)
        optimizer.load_state_dict(arrays, state["optimizer"])
        run_state.restore_rng(data_rng, state["data_rng"])
        run_state.restore_rng(tinytorch.rng.generator(), state["init_rng"])
        step, best_val, best_step, elapsed = state["step"], state["best_val_loss"], state["best_step"], state["elapsed"]
        interval = state["interval"]
        run_state.rewind(out, step)
        print(f"resuming {out} at step {step}", file=sys.stderr)
        if step >= cfg.steps:
            print(f"the run is complete (--steps {cfg.steps}); to train longer: {resume_command} --steps N",
                  file=sys.stderr)
    else:
        if cfg.resume:
            print(f"nothing to resume in {out}: starting from step 0", file=sys.stderr)
        (out / run_state.METRICS).unlink(missing_ok=True)  # of a run killed before its first checkpoint

    provenance = {"model": cfg.model, "command": command, "seed": cfg.seed,
                  "tinytorch_version": tinytorch.__version__, **data_info}

    def trainer_state() -> dict:
        return {"step": step, "data_rng": run_state.rng_state(data_rng),
                "init_rng": run_state.rng_state(tinytorch.rng.generator()), "best_val_loss": best_val,
                "best_step": best_step,
                "elapsed": elapsed, "interval": interval, "model_config": config.to_dict(),
                "train_config": asdict(cfg), "data_fingerprint": data_info.get("corpus", {}).get("fingerprint")}

    figures = {}  # of the latest evaluation, for the saved model's provenance

    def save() -> Path | None:
        """Save this step; on failure (disk full, ...) say why and keep the previous checkpoint."""
        try:
            folder = run_state.save_step(out, step, model, tokenizer, optimizer, trainer_state(),
                                         {**provenance, "steps": step, **figures})
        except run_state.SAVE_ERRORS as err:
            latest = run_state.latest_step(out)
            print(f"\nwarning: saving step {step} failed ({run_state.why(err)}); "
                  f"{latest.name if latest else 'no checkpoint'} stays the latest", file=sys.stderr)
            return None
        run_state.prune(out, cfg.keep, protect=run_state.step_name(best_step))
        return folder

    def run_eval() -> dict:
        """Evaluate; a new best is saved at once, so its step folder exists to be exported."""
        nonlocal best_val, best_step, figures
        record = {"kind": "eval", "step": step, **evaluate(model)}
        run_state.append_metrics(out, record)
        figures = _figures(record)
        if record["val_loss"] < best_val:
            best_val, best_step = record["val_loss"], step
            save()
        return record

    # ---------------------------------------------------------------- loop
    stop = StopRequest()
    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    tokens_per_step = cfg.batch_size * cfg.n_positions
    bar = tqdm(total=cfg.steps, initial=step, desc=cfg.model, disable=cfg.quiet, dynamic_ncols=True)
    started = time.perf_counter() - elapsed
    status = 0
    try:
        if step == 0:
            run_eval()
        while step < cfg.steps:
            if stop.signal:
                saved = f"saved step {step} to {folder}" if (folder := save()) else "not saved"
                print(f"\n{stop.signal}: {saved}; continue with: {resume_command}", file=sys.stderr)
                break
            if cfg.hours and time.perf_counter() - started > cfg.hours * 3600:
                print(f"\nthe --hours budget of {cfg.hours:g} h is spent at step {step}; continue with: "
                      f"{resume_command} --hours {2 * cfg.hours:g}", file=sys.stderr)
                break
            lr = get_lr(step)
            optimizer.set_lr(lr)
            x, y = next_batch(data_rng)
            t0 = time.perf_counter()
            loss, norm = train_step(model, optimizer, x, y, cfg.grad_clip, step=step)
            step += 1
            elapsed = time.perf_counter() - started
            interval = [interval[0] + loss, interval[1] + 1]
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                mean = interval[0] / interval[1]
                rate = tokens_per_step / max(time.perf_counter() - t0, 1e-9)
                run_state.append_metrics(out, {"kind": "train", "step": step, "loss": mean, "lr": lr,
                                               "grad_norm": norm, "elapsed": round(elapsed, 2),
                                               "rss_mb": round(memory.rss_bytes() / 2**20, 1)})
                bar.set_postfix(loss=f"{mean:.3f}", tok_s=f"{rate:,.0f}")
                interval = [0.0, 0]
            if step % cfg.eval_every == 0 or step == cfg.steps:
                record = run_eval()
                bar.write(_eval_line(record))
            if (step % cfg.save_every == 0 or step == cfg.steps) and best_step != step:
                save()
    except DivergenceError as err:
        latest = run_state.latest_step(out)
        where = f"the last good checkpoint, {latest}, stays the latest" if latest else "no checkpoint was saved yet"
        print(f"\nerror: {err} {where}.", file=sys.stderr)
        status = 1
    finally:
        bar.close()
        for s, handler in previous.items():
            signal.signal(s, handler)
    if status == 0 and cfg.export:
        folder = export_checkpoint(out, Path(cfg.export), cfg, command)
        print(f"exported the best model to {folder}", file=sys.stderr)
        if cfg.push_to_hub:
            from tinytorch.hub import push_folder

            url = push_folder(folder, cfg.push_to_hub, commit_message=f"tinytorch pretrain: {command}")
            print(f"published {folder} to {url}", file=sys.stderr)
    return status


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
