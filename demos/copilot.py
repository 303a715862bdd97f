"""The Copilot demo's handlers: plain functions of (inputs..., session) that tests call directly
and copilot_ui.py wires to buttons. Bad input raises DemoError with the message to show.

Each browser session (and each gradio_client) holds a CopilotSession. Sessions share the loaded
pretrained model read-only; the first fine-tune gives a session its own copy, so one student's
training never touches another's weights.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import threading
import time
from html import escape
from pathlib import Path


from tinytorch import completion
from tinytorch.checkpoint import save_pretrained
from tinytorch.shipped import SHIPPED_NAMES
from tinytorch.evaluate import text_metrics
from tinytorch.keystrokes import keystrokes_saved
from tinytorch.memory import release_free_memory
from tinytorch.training import DivergenceError

from . import decoding, inside, lines, names, views
from .common import COMPUTE, DemoError, Loaded, ModelStore, as_float, as_int, check_prompt, \
    check_training_text, clone, close_temp_folder, display_name, shipped, temp_folder
from .copies import COPIES
from .curves import BITS, bits, curve_frame, empty_frame
from .finetune import BATCH, BATCH_RANGE, LR_RANGE, STEPS, STEPS_RANGE, Recipe, recommended_lr, run
from .heldout import HELD_OUT_PERCENT, PERCENT_RANGE, Split, split_text
from .runs import Runs

# The shipped copilots, the default first (tinytorch.shipped names every shipped model).
SHIPPED = tuple(name for name in SHIPPED_NAMES if name.startswith("copilot"))
OVERFITTING = 0.01  # nats: a held-out loss this far above its best says the model has begun to memorize
# Try it and Compare: the line completion of demos.decoding by default; the sampling settings
# apply to its "sample" mode. 80 characters: a PEP 8 line and its newline.
# SEED None: a fresh seed for each press, shown with the result so that it can be repeated.
MAX_NEW, TEMPERATURE, TOP_K, TOP_P, SEED, MODE = completion.MAX_NEW_TOKENS, 0.8, 0, 0.95, None, decoding.MODE
MAX_PROMPTS = 8
MAP_CHARS = 40  # characters drawn in the attention map
SCORED_CHARS = 10_000  # of each part of the text Compare scores: enough to measure, and bounded
ZIPPED = "copilot-finetuned"  # the one folder inside the downloaded zip
REPLACED = ("This fine-tune ended before its last step: a Load, a Reset or a new fine-tune took over the "
            "session's weights, and nothing more of it was kept.")


class CopilotSession:
    """One student's state: the pretrained model they chose and, once they fine-tune, their copy."""

    def __init__(self):
        self.base: Loaded | None = None  # shared, never modified
        self.copy = None  # the session's own fine-tuned copy (demos/copies.py), or None: see model
        self.runs = Runs()  # which fine-tune owns the weights (demos/runs.py)
        self.split: Split | None = None  # the text it was last fine-tuned on: trained part, held-out part
        self.steps_trained = 0
        self.curve: list[tuple[int, float]] = []  # (step, batch loss) of the last fine-tune
        self.held_curve: list[tuple[int, float]] = []  # (step, held-out loss) of the last fine-tune
        self.kept_step: int | None = None  # the step whose weights the last fine-tune kept
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

    @property
    def text(self) -> str | None:
        """The whole text of the last fine-tune, both parts."""
        return self.split.train + self.split.held_out if self.split else None

    def forget_finetune(self):
        self.model, self.split, self.steps_trained, self.settings = None, None, 0, {}
        self.curve, self.held_curve, self.kept_step = [], [], None

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


def figures_on(models: dict, tokenizer, text: str, begin: int, end: int, names_limit: int = 24,
               lines_limit: int = 16) -> dict:
    """Each model's figures on text[begin:end]: bits per character (the part scored on its own, at
    most SCORED_CHARS of it), the share of keystrokes its next-word suggestions save there
    (tinytorch.keystrokes), and its own names and lines completed there, with all the text before
    each as context. {"characters", "bits_per_char", "keystrokes_saved", "own_names_completed",
    "own_lines_completed"}, the last four {model: value or (right, total)}."""
    part = text[begin:end]
    with COMPUTE:  # bounds the time the lock is held
        losses = {k: text_metrics(m, tokenizer, [part[:SCORED_CHARS]])["bits_per_char"] for k, m in models.items()}
        # the part typed with Tab accepting each next word, all the text before it as context
        keys = {k: keystrokes_saved(m, tokenizer, text[:end], start=begin)["saved"] for k, m in models.items()}
    cases = names.completion_cases(text, names_limit, begin, end)
    own = lines.line_cases(text, lines_limit, begin, end)
    return {"characters": len(part), "bits_per_char": losses, "keystrokes_saved": keys,
            "own_names_completed": {k: (names.names_completed(m, tokenizer, cases), len(cases))
                                    for k, m in models.items()},
            "own_lines_completed": {k: (lines.lines_completed(m, tokenizer, own), len(own)) for k, m in models.items()}}


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
                    f"{len(session.split.train):,} characters. Reset to go back to the pretrained weights.")
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
            "seed": secrets.randbelow(2**31) if seed in (None, "") else as_int(seed, "Seed", 0, 2**31 - 1),
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
        model = session.current
        start = time.perf_counter()
        found = self.complete(model, tokenizer, prompt, settings, mode, decoding.SUGGESTIONS)
        seconds = time.perf_counter() - start
        written = found[0][0]
        details = {"prompt": prompt, "completion": written, "mode": mode,
                   "suggestions": [{"completion": text, "probability": p} for text, p in found],
                   "model": session.label, "fine_tuned": session.model is not None, "seconds": round(seconds, 3),
                   **settings}
        html = views.generation(prompt, written, seconds, session.label)
        if mode == "sample":
            return html + views.seed_note(settings["seed"]), details, session
        with COMPUTE:
            details["next_word"] = decoding.next_word(model, tokenizer, prompt)
        return html + views.next_word(details["next_word"]) + views.suggestions(found), details, session

    # ------------------------------------------------------------------ 3. fine-tune
    def finetune(self, text, steps=STEPS, lr=None, batch_size=BATCH, held_out=HELD_OUT_PERCENT, keep_best=True,
                 session=None):
        """Fine-tune the session's copy on `text` but its last `held_out` percent of lines, which it
        never sees and is measured on as it goes; yields (status HTML, loss curve, session). With
        keep_best the run ends with the weights of its best held-out evaluation. Stop (or a
        closed session) ends it after the current step, keeping what it learned. A Load, a Reset
        or another fine-tune replaces the weights and so ends it (demos/runs.py). lr None (or
        empty): the model's recommended_lr."""
        session = self.session(session)
        try:
            yield from session.runs.own(self._finetune(text, steps, lr, batch_size, held_out, keep_best, session))
        finally:
            release_free_memory()  # its optimizer state and activations: back to the OS, not kept by malloc

    def _finetune(self, text, steps, lr, batch_size, held_out, keep_best, session):
        steps = as_int(steps, "Steps", *STEPS_RANGE)
        auto = recommended_lr(session.base.model.config)
        lr = auto if lr in (None, "") else as_float(lr, "Learning rate", *LR_RANGE, hint=f" Try {auto:g}.")
        batch_size = as_int(batch_size, "Batch size", *BATCH_RANGE)
        percent = as_int(held_out, "Held-out part (percent of lines)", *PERCENT_RANGE)
        tokenizer = session.base.tokenizer
        text, note = check_training_text(text, tokenizer)
        split = split_text(text, percent)
        note = " ".join(escape(n) for n in (note, split.describe()) if n)  # shown in HTML; it quotes the text

        session.stop.clear()
        run_id = session.runs.start()  # the session's previous run, if any, ends before its next step
        before = (session.split, session.steps_trained)
        if session.model is not None and session.text not in (None, text):
            note += " Continuing from your fine-tuned weights on a new text."
        session.model = model = clone(session.current)  # this run's own weights: one that is ending never steps on them
        session.curve, session.held_curve, session.kept_step = [], [], None
        recipe = Recipe(lr, steps, batch_size, keep_best=bool(keep_best) and split.has_held_out)
        session.settings = {"steps": steps, "lr": lr, "batch_size": batch_size, "context": recipe.context,
                            "held_out_percent": percent if split.has_held_out else 0, "keep_best": recipe.keep_best}
        starting = views.status(f"Starting: {steps} steps on {len(split.train):,} characters. {note}")
        # Said with the held-out loss before the first step, so that it shows where the curve starts;
        # at once, over empty axes, when none is held out.
        if not split.has_held_out:
            yield starting, empty_frame(), session

        loop = run(model, tokenizer, split, recipe, lock=COMPUTE,
                   should_stop=lambda: session.stop.is_set() or not session.runs.owns(run_id))
        shown, done = 0.0, None
        try:
            for done in loop:
                with session.runs.writing(run_id) as owned:
                    if not owned:
                        break
                    session.last_used = time.monotonic()  # training is not idling
                    if done.held_out is not None:
                        session.held_curve.append((done.step, done.held_out))
                    if done.step > 0:
                        session.curve.append((done.step, done.loss))
                        session.steps_trained = before[1] + done.step
                        session.split = split
                if done.step == 0:
                    yield starting, self._curve(session), session
                elif done.elapsed - shown >= 0.25 and done.step < steps:  # a few updates a second
                    shown = done.elapsed
                    yield (views.progress(done.step, steps, bits(done.loss), done.elapsed, done.remaining,
                                          " ".join(filter(None, (note, self._held_out_note(session, done)))),
                                          unit=BITS),
                           self._curve(session), session)
        except DivergenceError as err:  # train() has put the weights back as they were
            with session.runs.writing(run_id) as owned:
                if owned:
                    session.split, session.steps_trained = before
                    if before[0] is None:
                        session.forget_finetune()
            if not owned:
                yield views.status(REPLACED, "warn"), empty_frame(), session
                return
            yield (views.status(f"<b>Training diverged, so the weights were restored to what they were "
                                f"before this run.</b> {err}", "warn"), self._curve(session), session)
            return
        if not session.runs.owns(run_id):
            yield views.status(REPLACED, "warn"), empty_frame(), session
            return
        if done is None or done.step == 0:
            yield views.status("Stopped before the first step; nothing changed.", "warn"), empty_frame(), session
            return
        stopped = done.step < steps
        summary = f"Stopped at step {done.step} of {steps}, keeping what it learned. " if stopped else ""
        if recipe.keep_best:
            session.kept_step = done.best_step
            summary += self._kept_note(done)
        summary += "Now <b>Compare</b> it with the pretrained model below."
        yield (views.progress(done.step, steps, bits(done.loss), done.elapsed, 0.0,
                              " ".join(filter(None, (note, self._held_out_note(session, done), summary))),
                              done=True, unit=BITS),
               self._curve(session), session)

    @staticmethod
    def _curve(session):
        return curve_frame(session.curve, bits, average=True, held_out=session.held_curve, kept_step=session.kept_step)

    @staticmethod
    def _held_out_note(session, done) -> str:
        """What the held-out curve says so far: its best, or overfitting since the best."""
        if not session.held_curve:
            return ""
        step, latest = session.held_curve[-1]
        if latest > done.best_held_out + OVERFITTING and done.best_step < step:
            return (f"<b>Overfitting:</b> the held-out loss rose from {bits(done.best_held_out):.3f} (step "
                    f"{done.best_step}) to {bits(latest):.3f}{BITS} while the training loss kept falling: the "
                    "model is memorizing its training text.")
        return f"Held-out loss: best {bits(done.best_held_out):.3f}{BITS} at step {done.best_step}."

    @staticmethod
    def _kept_note(done) -> str:
        if done.best_step == 0:
            return ("No step did better on the held-out part than the pretrained weights, so those were kept. "
                    "Try a lower learning rate or fewer steps. ")
        if done.best_step < done.step:
            return f"Kept the weights of step {done.best_step}, the best on the held-out part. "
        return ""

    def stop(self, session=None) -> None:
        """Ask this session's running fine-tune to stop after its current step."""
        if isinstance(session, CopilotSession):
            session.stop.set()

    # ------------------------------------------------------------------ 4. compare
    def compare(self, prompts="", max_new_tokens=MAX_NEW, temperature=TEMPERATURE, top_k=TOP_K, top_p=TOP_P,
                seed=SEED, mode=MODE, session=None):
        """Pretrained vs fine-tuned on each prompt (same decoding and settings), and both models'
        figures on the held-out part of the text (what the fine-tune learned: it never saw that
        part) and on the part it trained on (what it memorized). Returns (HTML, details).
        Empty prompts: ones drawn from the text."""
        session = self.session(session)
        with session.runs.lock:  # one state throughout, whatever a Reset or Load does meanwhile
            base, tuned, split = session.base, session.model, session.split
        if tuned is None or split is None:
            raise DemoError("Nothing to compare yet: fine-tune the model first (step 3), then compare.")
        tokenizer, text = base.tokenizer, split.train + split.held_out
        listed = names.parse_prompts(prompts) if isinstance(prompts, str) else []
        if not listed:
            listed = names.default_prompts(text) or [text[:40]]
        if len(listed) > MAX_PROMPTS:
            raise DemoError(f"{len(listed)} prompts: compare at most {MAX_PROMPTS} at once.")
        listed = [check_prompt(p, tokenizer) for p in listed]
        mode = self.mode(mode)
        settings = self.sampling(max_new_tokens, temperature, top_k, top_p, seed, tokenizer.vocab_size)
        models = {"pretrained": base.model, "finetuned": tuned}
        rows = [{"prompt": p, **{k: self.complete(m, tokenizer, p, settings, mode)[0][0] for k, m in models.items()}}
                for p in listed]
        held = figures_on(models, tokenizer, text, len(split.train), len(text)) if split.has_held_out else None
        memorized = figures_on(models, tokenizer, text, 0, len(split.train), names_limit=12, lines_limit=8)
        details = {"rows": rows, "held_out": held, "memorized": memorized, "mode": mode, **settings}
        return views.comparison(rows, held, memorized, split.describe()), details

    # ------------------------------------------------------------------ 5. reset, download
    def reset(self, session=None):
        """Back to the pretrained weights; returns (status HTML, empty curve, session)."""
        session = self.session(session)
        session.stop.set()  # a fine-tune still running stops before its next step
        with session.runs.replacing():  # and writes nothing more
            had = session.copy is not None
            session.forget_finetune()
        message = "Back to the pretrained weights." if had else "Already at the pretrained weights."
        return views.status(message, "ok"), empty_frame(), session

    def download(self, session=None) -> str:
        """The fine-tuned model as a zipped checkpoint folder (what from_pretrained loads)."""
        session = self.session(session)
        with session.runs.lock:  # what the session holds now, whatever a Reset or Load does meanwhile
            base, tuned, settings = session.base, session.model, dict(session.settings)
            steps_done, split = session.steps_trained, session.split
        if tuned is None:
            raise DemoError("Nothing to download yet: fine-tune the model first.")
        provenance = {
            "fine_tuned_from": display_name(base.source),  # a shipped name, a Hub id or a folder's name: no server path
            "base_provenance": base.config.get("provenance", {}),
            "fine_tune": {**settings, "steps_done": steps_done, "text_chars": len(split.train),
                          "held_out_chars": len(split.held_out),
                          "text_sha256": hashlib.sha256(split.train.encode()).hexdigest()},
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
