"""The Copilot demo's handlers: plain functions of (inputs..., session) that tests call directly
and copilot_ui.py wires to buttons. Bad input raises DemoError with the message to show.

Each browser session (and each gradio_client) holds a CopilotSession. Sessions share the loaded
pretrained model read-only; the first fine-tune gives a session its own copy, so one student's
training never touches another's weights.
"""

from __future__ import annotations

import hashlib
import math
import shutil
import threading
import time
from html import escape
from pathlib import Path

import numpy as np

from tinytorch import completion
from tinytorch.checkpoint import save_pretrained
from tinytorch.shipped import SHIPPED_NAMES
from tinytorch.evaluate import text_metrics
from tinytorch.memory import release_free_memory
from tinytorch.training import DivergenceError, sample_batch

from . import decoding, inside, lines, names, training, views
from .common import COMPUTE, DemoError, Loaded, ModelStore, as_float, as_int, check_prompt, \
    check_training_text, clone, close_temp_folder, display_name, shipped, temp_folder
from .copies import COPIES
from .runs import Runs
from .curves import curve_frame

# The shipped copilots, the default first (tinytorch.shipped names every shipped model).
SHIPPED = tuple(name for name in SHIPPED_NAMES if name.startswith("copilot"))
# Fine-tune defaults: 100 steps are short enough for a class to wait for, and enough to learn an
# example's names (benchmarks/demo_finetune.py measures both; figures in benchmarks/README.md).
STEPS, STEPS_RANGE = 100, (10, 300)
LR_RANGE = (1e-5, 0.1)  # the default depends on the model: see recommended_lr
BATCH, BATCH_RANGE = 8, (1, 64)
CONTEXT = 64  # characters per training window: an identifier and the line or two before it
# Try it and Compare: the line completion of demos.decoding by default; the sampling settings
# apply to its "sample" mode. 80 characters: a PEP 8 line and its newline.
MAX_NEW, TEMPERATURE, TOP_K, TOP_P, SEED, MODE = completion.MAX_NEW_TOKENS, 0.8, 0, 0.95, 0, decoding.MODE
MAX_PROMPTS = 8
MAP_CHARS = 40  # characters drawn in the attention map
BITS = " bits/char"
ZIPPED = "copilot-finetuned"  # the one folder inside the downloaded zip
REPLACED = ("This fine-tune ended before its last step: a Load, a Reset or a new fine-tune took over the "
            "session's weights, and nothing more of it was kept.")


def recommended_lr(config) -> float:
    """The default learning rate for fine-tuning a model of this width: 3e-3 at n_embd 32, scaled
    as 1/n_embd above that (wider layers take bigger steps from the same rate). The rates were
    chosen with benchmarks/demo_finetune.py --lr (figures in benchmarks/README.md)."""
    return round(3e-3 * min(1.0, 32 / config.n_embd), 5)


class CopilotSession:
    """One student's state: the pretrained model they chose and, once they fine-tune, their copy."""

    def __init__(self):
        self.base: Loaded | None = None  # shared, never modified
        self.copy = None  # the session's own fine-tuned copy (demos/copies.py), or None: see model
        self.runs = Runs()  # which fine-tune owns the weights (demos/runs.py)
        self.train_text: str | None = None  # what it was last fine-tuned on
        self.steps_trained = 0
        self.curve: list[tuple[int, float]] = []  # (step, loss) of the last fine-tune
        self.settings: dict = {}
        self.stop = threading.Event()
        self.workdir: Path | None = None  # for the zipped checkpoint; removed with the session
        self.notice = ""  # why the model shown is not the one asked for, until the next Load
        self.last_used = time.monotonic()  # see demos/sessions.py: idle sessions are released

    @property
    def model(self):
        """The session's fine-tuned model, or None (read back from disk if it was spilled)."""
        copy = self.copy
        return copy.get() if copy is not None else None

    @model.setter
    def model(self, model):
        """A new fine-tuned model (counted in the server's budget for copies), or None."""
        old, self.copy = self.copy, COPIES.keep(model, self) if model is not None else None
        if old is not None:
            old.drop()

    def folder(self) -> Path:
        """The session's own temporary folder (the zip, a spilled copy), made on first use."""
        if self.workdir is None:
            self.workdir = temp_folder()
        return self.workdir

    @property
    def current(self):
        return self.model if self.model is not None else self.base.model

    @property
    def label(self) -> str:
        return display_name(self.base.source) + (" (fine-tuned)" if self.model is not None else "")

    def forget_finetune(self):
        self.model, self.train_text, self.steps_trained, self.curve, self.settings = None, None, 0, [], {}

    def close(self):
        """The session ended (tab closed, or idle too long): stop its fine-tune, drop its models,
        remove its files."""
        self.stop.set()
        with self.runs.replacing():
            self.forget_finetune()
            self.base = None
        if self.workdir is not None:
            close_temp_folder(self.workdir)
            self.workdir = None


def bits(nats: float) -> float:
    """A cross-entropy in bits per character, the unit the page speaks (Compare, the model card)."""
    return nats / math.log(2)


def offered(first: str | None = None) -> list[str]:
    """The models the Load menu offers: `first` (a folder or repo id named on the command line)
    ahead of the shipped copilots found here; with no `first` and none here, all of them by name
    (the page then says how to create them)."""
    here = [name for name in SHIPPED if shipped(name).is_dir() and name != first]
    return [first] + here if first else here or list(SHIPPED)


class Copilot:
    """The handlers, bound to the checkpoints this app offers."""

    def __init__(self, checkpoints=None, store: ModelStore | None = None):
        if checkpoints is None:
            checkpoints = offered()
        self.checkpoints = list(checkpoints)
        self.default = self.checkpoints[0]
        self.store = store or ModelStore()

    # ------------------------------------------------------------------ session
    def session(self, session: CopilotSession | None) -> CopilotSession:
        """The session, created on first use, with the default model loaded if none is: the first
        checkpoint offered, or when it cannot load (a Hub id with no network), the next that can."""
        session = session if isinstance(session, CopilotSession) else CopilotSession()
        session.last_used = time.monotonic()
        if session.base is None:
            failed = None
            for name in self.checkpoints:
                try:
                    session.base = self.store.get(name, self.checkpoints)
                    break
                except DemoError as err:
                    failed = failed or err
            if session.base is None:
                raise DemoError(f"{failed} Choose another model above, or create the shipped one with "
                                "`python -m pretrain copilot`.")
            if failed is not None:
                session.notice = f"{views.plain(failed)} **Loaded {display_name(session.base.source)} instead.**"
        return session

    def card(self, session: CopilotSession) -> str:
        base = session.base
        note = ""
        if session.model is not None:
            note = (f"**Fine-tuned in this session:** {session.steps_trained} steps on "
                    f"{len(session.train_text or ''):,} characters. Reset to go back to the pretrained weights.")
        if session.notice:
            note = (note + "\n\n" if note else "") + session.notice
        return views.model_card(display_name(base.source), base.config, base.model.num_parameters(), note)

    # ------------------------------------------------------------------ 1. load
    def load(self, source, session=None):
        """Load a shipped checkpoint, a folder or a Hub repo id; returns (model card, session).
        If it fails, the session keeps the model it had."""
        loaded = self.store.get(source, self.checkpoints)  # raises DemoError with the reason
        session = session if isinstance(session, CopilotSession) else CopilotSession()
        with session.runs.replacing():  # a fine-tune of the old weights ends
            session.base, session.notice = loaded, ""
            session.forget_finetune()
        return self.card(session), session

    # ------------------------------------------------------------------ 2. generate
    def sampling(self, max_new_tokens, temperature, top_k, top_p, seed, vocab_size: int) -> dict:
        return {
            "max_new_tokens": as_int(max_new_tokens, "Max new characters", 1, 400),
            "temperature": as_float(temperature, "Temperature", 0.0, 2.0, " Use 0 for the most likely character."),
            "top_k": as_int(top_k, "Top-k", 0, vocab_size) or None,  # 0 = off
            "top_p": as_float(top_p, "Top-p", 0.01, 1.0) if top_p not in (None, "") else None,
            "seed": as_int(seed, "Seed", 0, 2**31 - 1),
        }

    def mode(self, mode) -> str:
        try:
            return decoding.check_mode(mode or MODE)
        except ValueError as err:
            raise DemoError(f"{err}.") from None

    def complete(self, model, tokenizer, prompt: str, settings: dict, mode: str = MODE,
                 suggestions: int = 1) -> list[tuple[str, float]]:
        """[(completion, probability)], best first (see demos.decoding.suggest)."""
        with COMPUTE:
            return decoding.suggest(model, tokenizer, prompt, mode, settings, suggestions)

    def generate(self, prompt, max_new_tokens=MAX_NEW, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                 seed=SEED, mode=MODE, session=None):
        """Complete the prompt: the line (default), the block, or sampled characters (mode, see
        demos.decoding). Returns (HTML: the best completion marked, then the suggestions with
        their probabilities; details; session)."""
        session = self.session(session)
        tokenizer = session.base.tokenizer
        prompt = check_prompt(prompt, tokenizer)
        mode = self.mode(mode)
        settings = self.sampling(max_new_tokens, temperature, top_k, top_p, seed, tokenizer.vocab_size)
        start = time.perf_counter()
        found = self.complete(session.current, tokenizer, prompt, settings, mode, decoding.SUGGESTIONS)
        seconds = time.perf_counter() - start
        written = found[0][0]
        details = {"prompt": prompt, "completion": written, "mode": mode,
                   "suggestions": [{"completion": text, "probability": p} for text, p in found],
                   "model": session.label, "fine_tuned": session.model is not None, "seconds": round(seconds, 3),
                   **settings}
        html = views.generation(prompt, written, seconds, session.label)
        return html + (views.suggestions(found) if mode != "sample" else ""), details, session

    # ------------------------------------------------------------------ 3. fine-tune
    def finetune(self, text, steps=STEPS, lr=None, batch_size=BATCH, session=None):
        """Fine-tune the session's copy on `text`; yields (status HTML, loss curve, session) as it
        goes. Stop (or a closed session) ends it after the current step, keeping what it learned.
        A Load, a Reset or another fine-tune replaces the weights and so ends it (demos/runs.py).
        lr None (or empty): the model's recommended_lr."""
        session = self.session(session)
        try:
            yield from session.runs.own(self._finetune(text, steps, lr, batch_size, session))
        finally:
            release_free_memory()  # its optimizer state and activations: back to the OS, not kept by malloc

    def _finetune(self, text, steps, lr, batch_size, session):
        steps = as_int(steps, "Steps", *STEPS_RANGE)
        auto = recommended_lr(session.base.model.config)
        lr = auto if lr in (None, "") else as_float(lr, "Learning rate", *LR_RANGE, hint=f" Try {auto:g}.")
        batch_size = as_int(batch_size, "Batch size", *BATCH_RANGE)
        tokenizer = session.base.tokenizer
        text, note = check_training_text(text, tokenizer)
        note = escape(note)  # shown in HTML; it quotes characters of the text
        ids = np.array(tokenizer.encode(text))
        context = min(CONTEXT, session.base.model.config.n_positions, len(ids) - 1)
        rng = np.random.default_rng(0)  # the same batches every run: a fine-tune is reproducible

        session.stop.clear()
        run = session.runs.start()  # the session's previous run, if any, ends before its next step
        before = (session.train_text, session.steps_trained)
        if session.model is not None and session.train_text not in (None, text):
            note = (note + " " if note else "") + "Continuing from your fine-tuned weights on a new text."
        session.model = model = clone(session.current)  # this run's own weights: one that is ending never steps on them
        session.curve = []
        session.settings = {"steps": steps, "lr": lr, "batch_size": batch_size, "context": context}
        yield (views.status(f"Starting: {steps} steps on {len(text):,} characters. {note}"),
               curve_frame([]), session)

        loop = training.train(model, lambda: sample_batch(ids, batch_size, context, rng), steps, lr,
                              should_stop=lambda: session.stop.is_set() or not session.runs.owns(run), lock=COMPUTE)
        shown, done = 0.0, None
        try:
            for done in loop:
                with session.runs.writing(run) as owned:
                    if not owned:
                        break
                    session.last_used = time.monotonic()  # training is not idling
                    session.curve.append((done.step, done.loss))
                    session.steps_trained = before[1] + done.step
                    session.train_text = text
                if done.elapsed - shown >= 0.25 and done.step < steps:  # a few updates a second
                    shown = done.elapsed
                    yield (views.progress(done.step, steps, bits(done.loss), done.elapsed, done.remaining, note,
                                          unit=BITS),
                           curve_frame(session.curve, bits, average=True), session)
        except DivergenceError as err:  # train() has put the weights back as they were
            with session.runs.writing(run) as owned:
                if owned:
                    session.train_text, session.steps_trained = before
                    if before[0] is None:
                        session.forget_finetune()
            if not owned:
                yield views.status(REPLACED, "warn"), curve_frame([]), session
                return
            yield (views.status(f"<b>Training diverged, so the weights were restored to what they were "
                                f"before this run.</b> {err}", "warn"),
                   curve_frame(session.curve, bits, average=True), session)
            return
        if not session.runs.owns(run):
            yield views.status(REPLACED, "warn"), curve_frame([]), session
            return
        if done is None:
            yield views.status("Stopped before the first step; nothing changed.", "warn"), curve_frame([]), session
            return
        stopped = done.step < steps
        summary = (f"Stopped at step {done.step} of {steps}, keeping what it learned. " if stopped else "") + \
            "Now <b>Compare</b> it with the pretrained model below."
        yield (views.progress(done.step, steps, bits(done.loss), done.elapsed, 0.0,
                              (note + " " if note else "") + summary, done=True, unit=BITS),
               curve_frame(session.curve, bits, average=True), session)

    def stop(self, session=None) -> None:
        """Ask this session's running fine-tune to stop after its current step."""
        if isinstance(session, CopilotSession):
            session.stop.set()

    # ------------------------------------------------------------------ 4. compare
    def compare(self, prompts="", max_new_tokens=MAX_NEW, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                seed=SEED, mode=MODE, session=None):
        """Pretrained vs fine-tuned on each prompt (same decoding and settings), and both models'
        loss, own-name and own-line completion on the training text. Returns (HTML, details).
        Empty prompts: ones drawn from the training text."""
        session = self.session(session)
        with session.runs.lock:  # one state throughout, whatever a Reset or Load does meanwhile
            base, tuned, train_text = session.base, session.model, session.train_text
        if tuned is None or train_text is None:
            raise DemoError("Nothing to compare yet: fine-tune the model first (step 3), then compare.")
        tokenizer = base.tokenizer
        listed = names.parse_prompts(prompts) if isinstance(prompts, str) else []
        if not listed:
            listed = names.default_prompts(train_text) or [train_text[:40]]
        if len(listed) > MAX_PROMPTS:
            raise DemoError(f"{len(listed)} prompts: compare at most {MAX_PROMPTS} at once.")
        listed = [check_prompt(p, tokenizer) for p in listed]
        mode = self.mode(mode)
        settings = self.sampling(max_new_tokens, temperature, top_k, top_p, seed, tokenizer.vocab_size)
        models = {"pretrained": base.model, "finetuned": tuned}
        rows = [{"prompt": p, **{k: self.complete(m, tokenizer, p, settings, mode)[0][0] for k, m in models.items()}}
                for p in listed]
        text = train_text[:10_000]  # enough to measure; bounds the time the lock is held
        with COMPUTE:
            losses = {k: text_metrics(m, tokenizer, [text])["bits_per_char"] for k, m in models.items()}
        cases = names.completion_cases(text)
        completed = {k: (names.names_completed(m, tokenizer, cases), len(cases)) for k, m in models.items()}
        own = lines.line_cases(text)
        own_lines = {k: (lines.lines_completed(m, tokenizer, own), len(own)) for k, m in models.items()}
        details = {"rows": rows, "bits_per_char": losses, "own_names_completed": completed,
                   "own_lines_completed": own_lines, "mode": mode, **settings}
        return views.comparison(rows, losses, completed, own_lines), details

    # ------------------------------------------------------------------ 5. reset, download
    def reset(self, session=None):
        """Back to the pretrained weights; returns (status HTML, empty curve, session)."""
        session = self.session(session)
        session.stop.set()  # a fine-tune still running stops before its next step
        with session.runs.replacing():  # and writes nothing more
            had = session.copy is not None
            session.forget_finetune()
        message = "Back to the pretrained weights." if had else "Already at the pretrained weights."
        return views.status(message, "ok"), curve_frame([]), session

    def download(self, session=None) -> str:
        """The fine-tuned model as a zipped checkpoint folder (what from_pretrained loads)."""
        session = self.session(session)
        with session.runs.lock:  # what the session holds now, whatever a Reset or Load does meanwhile
            base, tuned, settings = session.base, session.model, dict(session.settings)
            steps_done, train_text = session.steps_trained, session.train_text or ""
        if tuned is None:
            raise DemoError("Nothing to download yet: fine-tune the model first.")
        provenance = {
            "fine_tuned_from": display_name(base.source),  # a shipped name, a Hub id or a folder's name: no server path
            "base_provenance": base.config.get("provenance", {}),
            "fine_tune": {**settings, "steps_done": steps_done, "text_chars": len(train_text),
                          "text_sha256": hashlib.sha256(train_text.encode()).hexdigest()},
            "tool": "python -m demos copilot",
        }
        workdir = session.folder()
        folder = workdir / ZIPPED
        with COMPUTE:
            save_pretrained(tuned, folder, tokenizer=base.tokenizer, provenance=provenance)
        archive = shutil.make_archive(str(folder), "zip", root_dir=workdir, base_dir=folder.name)
        shutil.rmtree(folder)  # the zip is what is served; the folder would double the disk used
        return archive

    # ------------------------------------------------------------------ 6. look inside
    def attention(self, prompt, layer=0, head=0, session=None):
        """(attention map HTML of one layer and head over the prompt's last characters,
        {next character: probability})."""
        session = self.session(session)
        model, tokenizer = session.current, session.base.tokenizer
        prompt = check_prompt(prompt, tokenizer)
        config = model.config
        layer = as_int(layer, "Layer", 0, config.n_layer - 1)
        head = as_int(head, "Head", 0, config.n_head - 1)
        ids = tokenizer.encode(prompt)[-config.n_positions:]
        with COMPUTE:
            logits, attentions = inside.forward(model, ids)
        weights = attentions[layer][head]  # (T, T)
        probs = inside.top_probs(logits[-1], tokenizer)
        shown = tokenizer.decode(ids)[-MAP_CHARS:]
        n = len(shown)
        title = (f"{session.label}: layer {layer}, head {head}, over the last {n} of {len(ids)} characters"
                 + (" (attention to earlier ones is not drawn)" if n < len(ids) else ""))
        return views.attention_map(shown, weights[-n:, -n:], title), probs
