"""The demos' handlers, called directly: what a student sees for good and bad input, session
isolation, the fine-tune loop, attention maps checked against the model, Level 1.

Hermetic: every model here is a tiny checkpoint written to tmp_path (the shipped ones are only
smoke-tested, when present, at the end), and the one Hub test talks to FakeHub on 127.0.0.1.
"""

import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

import tinytorch
from demos import common, decoding, inside, lines, names, training
from tinytorch import completion
from demos.common import COMPUTE, DemoError, FairLock, check_training_text, read_upload
from demos.copilot import Copilot, CopilotSession
from demos.heldout import split_text
from tinytorch.evaluate import text_metrics
from demos.level1 import FROM_CHECKPOINT, FROM_SCRATCH, Level1
from tasks.level1 import DEFAULT_TASKS, format_tasks, task_tokenizer
from tinytorch.checkpoint import save_pretrained
from tinytorch.nn import GPT, GPTConfig
from tinytorch.optim import AdamW
from tinytorch.text import CharTokenizer
from tinytorch.training import DivergenceError, train_step

from test_hub import hub, hub_env, offline  # noqa: F401  (fixtures)

PANTRY = common.examples()["pantry.py"]


def make_copilot(folder, seed=0, n_positions=32):
    """A tiny Copilot-shaped checkpoint: the Python alphabet, 2 layers, random weights."""
    tinytorch.manual_seed(seed)
    tokenizer = CharTokenizer.python()
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_positions=n_positions, n_embd=16, n_layer=2, n_head=2))
    return save_pretrained(model, folder, tokenizer=tokenizer, provenance={"model": "test", "steps": 0})


def make_level1(folder, seed=0):
    tinytorch.manual_seed(seed)
    tokenizer = task_tokenizer()
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_positions=8, n_embd=16, n_layer=1, n_head=2))
    return save_pretrained(model, folder, tokenizer=tokenizer, provenance={"model": "level1"},
                           extra_files={"tasks.txt": format_tasks(DEFAULT_TASKS)})


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo-checkpoints")
    return {"copilot": str(make_copilot(root / "copilot")), "other": str(make_copilot(root / "other", seed=1)),
            "level1": str(make_level1(root / "level1"))}


@pytest.fixture
def app(folders):
    return Copilot([folders["copilot"], folders["other"]])


def weights(model) -> dict:
    return {name: value.copy() for name, value in model.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def finetune(app, session, steps=20, text=PANTRY, **kw):
    return list(app.finetune(text, steps, kw.pop("lr", 3e-3), kw.pop("batch_size", 4), session=session, **kw))


# ===================================================================== copilot: load, generate
def test_load_shows_what_was_loaded_and_a_bad_source_keeps_the_model(app, folders):
    card, session = app.load(folders["copilot"])
    assert "parameters" in card and "2 layers" in card and "context 32" in card
    for bad in ["", "   ", "../../etc", "/etc", "https://evil.example/x", "user/model name", "a" * 500, None]:
        with pytest.raises(DemoError):
            app.load(bad, session)
    assert session.base.location == folders["copilot"]


def test_load_from_the_hub_and_an_unknown_repo(app, hub_env, folders):
    hub_env.add_commit("fake-user/tiny", {p.name: p.read_bytes() for p in Path(folders["other"]).iterdir()})
    card, session = app.load("fake-user/tiny")
    assert "fake-user/tiny" in card and session.base.source == "fake-user/tiny"
    with pytest.raises(DemoError, match="fake-user/missing"):
        app.load("fake-user/missing", session)
    assert session.base.source == "fake-user/tiny"  # still loaded


def test_offline_hub_is_a_clear_message(app, hub_env, offline):
    card, session = app.load(app.default)
    with pytest.raises(DemoError, match="(?i)offline|cache|network|connect"):
        app.load("fake-user/not-cached", session)
    assert session.base.source == app.default


def test_missing_shipped_checkpoint_says_how_to_make_it():
    with pytest.raises(DemoError, match="python -m pretrain copilot"):
        Copilot(["copilot-that-is-not-here"]).generate("def ")
    with pytest.raises(DemoError, match="python -m pretrain"):
        Copilot(["copilot"], store=common.ModelStore()).store.get("missing-name", ["missing-name"])


def test_generate_marks_the_written_part_and_is_reproducible(app):
    html, details, session = app.generate("def f(x):\n    return ", 12, 1.0, 0, 1.0, 7, "sample")
    assert details["prompt"] == "def f(x):\n    return " and 0 < len(details["completion"]) <= 12
    assert "background: #bbf7d0" in html and "return " in html  # the written part is green
    again = app.generate("def f(x):\n    return ", 12, 1.0, 0, 1.0, 7, "sample", session)[1]
    assert again["completion"] == details["completion"]  # same seed, same text
    greedy = app.generate("import ", 5, 0.0, 3, 0.5, 1, "sample", session)[1]
    assert greedy["top_k"] == 3 and greedy["top_p"] == 0.5


def test_sample_mode_draws_a_fresh_seed_each_press_and_shows_it(app):
    prompt = "def f(x):\n    return "
    presses = [app.generate(prompt, 30, 1.0, 0, 1.0, None, "sample") for _ in range(4)]
    seeds = [details["seed"] for _, details, _ in presses]
    assert len(set(seeds)) == 4  # 2**31 seeds: four equal draws would be a broken generator
    for html, details, _ in presses:
        assert f"seed <b>{details['seed']}</b>" in html
        again = app.generate(prompt, 30, 1.0, 0, 1.0, details["seed"], "sample")[1]
        assert again["completion"] == details["completion"]  # the seed shown repeats the text


def test_generate_completes_the_line_with_ranked_suggestions(app):
    """The default: beam search over the line; the suggestions are distinct, best first, and each
    probability is the model's for that whole completion."""
    prompt = "def f(x):\n    return "
    html, details, session = app.generate(prompt, 10)  # prompt + completion within the window of 32
    found = details["suggestions"]
    assert details["mode"] == "line" and 1 <= len(found) <= 3 and found[0]["completion"] == details["completion"]
    assert len({s["completion"] for s in found}) == len(found)
    assert [s["probability"] for s in found] == sorted((s["probability"] for s in found), reverse=True)
    model, tokenizer = session.current, session.base.tokenizer
    ids = tokenizer.encode(prompt)
    for s in found:
        new = tokenizer.encode(s["completion"])
        with tinytorch.no_grad():
            logits = model(np.array([ids + new])).data[0].astype(np.float64)
        logits[:, :2] = -np.inf  # <pad> and <unk> are never generated
        logp = logits - logits.max(-1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
        direct = sum(logp[len(ids) - 1 + i, t] for i, t in enumerate(new))
        text = s["completion"]
        if text.endswith("\n") or len(text) == 10:  # nothing trimmed after it
            assert s["probability"] == pytest.approx(np.exp(direct), rel=1e-3)
    assert "Suggestions" in html
    block = app.generate(prompt, 40, mode="block", session=session)[1]
    assert block["mode"] == "block" and block["suggestions"]
    with pytest.raises(DemoError, match="completion mode"):
        app.generate(prompt, 40, mode="paragraph", session=session)


@pytest.mark.parametrize("prompt, message", [
    ("", "empty"), ("   \n ", "empty"), (None, "empty"), ("caf\u00e9", "'é'"), ("x = '😀'", "never seen"),
    ("a\x00b", r"\\x00"), ("x" * 20_000, "limit"),
])
def test_bad_prompts_are_refused_with_a_clear_message(app, prompt, message):
    with pytest.raises(DemoError, match=message):
        app.generate(prompt)


@pytest.mark.parametrize("args, message", [
    ((0,), "Max new characters"), ((5000,), "Max new characters"), ((10, -1.0), "Temperature"),
    ((10, float("nan")), "Temperature"), ((10, 1.0, -1), "Top-k"), ((10, 1.0, 0, 0.0), "Top-p"),
    ((10, 1.0, 0, 1.5), "Top-p"), ((10, 1.0, 0, 1.0, -3), "Seed"), (("ten",), "whole number"),
    ((2.5,), "whole number"),
])
def test_bad_sampling_settings_are_refused(app, args, message):
    with pytest.raises(DemoError, match=message):
        app.generate("def ", *args)


# ===================================================================== copilot: fine-tune
def test_finetune_streams_progress_lowers_the_loss_and_touches_only_the_copy(app):
    _, session = app.load(app.default)
    base = weights(session.base.model)
    updates = finetune(app, session, steps=40)
    assert len(updates) >= 2 and "Done: step 40/40" in updates[-1][0]
    curve = updates[-1][1]
    assert list(curve.columns) == ["step", "loss", "series"] and curve["step"].max() == 40
    losses = [loss for _, loss in session.curve]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert same(weights(session.base.model), base)  # the shared pretrained model is untouched
    assert not same(weights(session.model), base)
    assert session.steps_trained == 40 and session.text == PANTRY
    # the held-out part (the last fifth of the lines) was measured before the first step and every
    # 10 steps; the run kept the weights of the lowest, which score exactly that again
    assert [step for step, _ in session.held_curve] == [0, 10, 20, 30, 40]
    split = split_text(PANTRY)
    assert session.split == split and split.held_out and PANTRY.endswith(split.held_out)
    best_step, best = min(session.held_curve, key=lambda point: point[1])
    assert session.kept_step == best_step
    assert text_metrics(session.model, session.base.tokenizer, [split.held_out])["loss"] == pytest.approx(best, abs=1e-9)


def test_stop_keeps_what_was_learned(app):
    _, session = app.load(app.default)
    stream = app.finetune(PANTRY, 300, 3e-3, 4, session=session)
    for update in stream:
        if session.steps_trained >= 3:
            app.stop(session)
    assert "Stopped at step" in update[0]
    assert 3 <= session.steps_trained < 300 and session.model is not None


def test_a_diverging_finetune_restores_the_weights_and_says_lower_the_learning_rate(app, monkeypatch):
    _, session = app.load(app.default)
    finetune(app, session, steps=10)
    before = weights(session.model)
    calls = []

    def diverge_at_third(model, optimizer, x, y, max_grad_norm=1.0, step=None):
        calls.append(step)
        if len(calls) == 3:
            raise DivergenceError(f"training diverged at step {step}: loss nan. The learning rate (0.1) "
                                  "is most likely too high: lower it (by 3-10x) and try again.")
        return train_step(model, optimizer, x, y, max_grad_norm, step)

    monkeypatch.setattr(training, "train_step", diverge_at_third)
    last = finetune(app, session, steps=20, lr=0.1)[-1]
    assert "restored" in last[0] and "lower it" in last[0]
    assert same(weights(session.model), before)  # two good steps of this run undone too
    assert session.steps_trained == 10


def test_a_real_divergence_is_caught_by_train_step(folders):
    """The weights go non-finite on purpose: train() must put back the ones from before."""
    model = GPT.from_pretrained(folders["copilot"])
    before = weights(model)
    ids = np.arange(2, 30)
    steps = training.train(model, lambda: (ids[None, :-1], ids[None, 1:]), 5, 1e-3)
    next(steps)
    model.transformer.wte.weight.data[0, 0] = np.inf
    with pytest.raises(DivergenceError, match="lower it"):
        list(steps)
    assert same(weights(model), before)


@pytest.mark.parametrize("kwargs, message", [
    (dict(steps=5), "Steps"), (dict(steps=1000), "Steps"), (dict(lr=10), "Learning rate"),
    (dict(lr=0), "Learning rate"), (dict(lr="fast"), "Learning rate"), (dict(batch_size=0), "Batch size"),
    (dict(text=""), "empty"), (dict(text="x = 1\n"), "at least"), (dict(text="a\x00" * 100), "binary"),
    (dict(text="é" * 500 + PANTRY[:200]), "does not look like Python"), (dict(text="x" * 150_000), "limit"),
])
def test_bad_finetune_settings_are_refused_before_training(app, kwargs, message):
    _, session = app.load(app.default)
    args = dict(text=PANTRY, steps=20, lr=3e-3, batch_size=4) | kwargs
    with pytest.raises(DemoError, match=message):
        list(app.finetune(args["text"], args["steps"], args["lr"], args["batch_size"], session=session))
    assert session.model is None


def test_training_text_ends_the_same_whatever_the_client_sent():
    """A browser's code box and an API call may differ in trailing blank lines: one text, one fine-tune."""
    tokenizer = CharTokenizer.python()
    body = PANTRY.rstrip()
    for sent in (body, body + "\n", body + "\n\n  \n", body + "\r\n"):
        assert check_training_text(sent, tokenizer) == (body + "\n", "")


def test_training_text_drops_a_few_unknown_characters_with_a_note():
    text, note = check_training_text("# café\n" + PANTRY, CharTokenizer.python())
    assert "é" not in text and "'é'" in note and text.endswith(PANTRY)


def test_uploads_are_capped_and_read_as_text(tmp_path):
    good = tmp_path / "mine.py"
    good.write_text("def mine():\n    return 1\n")
    assert read_upload(good) == "def mine():\n    return 1\n"
    (tmp_path / "big.py").write_text("x = 1\n" * 100_000)
    (tmp_path / "bin.py").write_bytes(bytes(range(256)))
    (tmp_path / "latin.py").write_bytes("caf\xe9".encode("latin-1"))
    for name, message in [("big.py", "KB"), ("bin.py", "binary"), ("latin.py", "UTF-8"), ("gone.py", "Could not")]:
        with pytest.raises(DemoError, match=message):
            read_upload(tmp_path / name)
    with pytest.raises(DemoError):
        read_upload(None)


# ===================================================================== compare, reset, download
def test_compare_needs_a_finetune_then_shows_both_with_the_same_settings(app):
    _, session = app.load(app.default)
    with pytest.raises(DemoError, match="fine-tune"):
        app.compare("", session=session)
    finetune(app, session, steps=60, lr=1e-2)
    html, details = app.compare("", 20, 0.0, 0, 1.0, 0, session=session)
    assert details["rows"] and all({"prompt", "pretrained", "finetuned"} <= set(r) for r in details["rows"])
    text, cut = session.text, len(session.split.train)
    cases = lines.line_cases(text, 16, cut, len(text))  # lines of the held-out part, all the text before as context
    assert cases and all(len(prefix) >= cut for prefix, _ in cases)
    tokenizer = session.base.tokenizer
    for key, model in (("pretrained", session.base.model), ("finetuned", session.model)):
        by_hand = sum(tokenizer.decode(model.generate(tokenizer.encode(prefix), 120, stop="line", num_beams=8,
                                                      length_penalty=completion.LENGTH_PENALTY, tokenizer=tokenizer)
                                       [len(tokenizer.encode(prefix)):]).split("\n")[0].rstrip() == rest
                      for prefix, rest in cases)
        assert details["held_out"]["own_lines_completed"][key] == (by_hand, len(cases))
    assert "Your own lines completed" in html and "what it learned" in html and "what it memorized" in html
    held, memorized = details["held_out"], details["memorized"]
    assert held["characters"] == len(session.split.held_out) and memorized["characters"] == cut
    for part, piece in ((held, session.split.held_out), (memorized, session.split.train)):
        for key, model in (("pretrained", session.base.model), ("finetuned", session.model)):
            assert part["bits_per_char"][key] == text_metrics(model, tokenizer, [piece])["bits_per_char"]
    # the kept weights are the best held-out step's: never worse there than the pretrained ones
    assert held["bits_per_char"]["finetuned"] <= held["bits_per_char"]["pretrained"]
    assert memorized["bits_per_char"]["finetuned"] < memorized["bits_per_char"]["pretrained"]
    assert "Pretrained" in html and "Fine-tuned" in html
    html, details = app.compare("def pan\n---\nclass J", 10, 0.0, 0, 1.0, 0, session=session)
    assert [r["prompt"] for r in details["rows"]] == ["def pan", "class J"]
    with pytest.raises(DemoError, match="at most"):
        app.compare("\n---\n".join(["x"] * 20), session=session)


def test_reset_goes_back_to_the_pretrained_weights(app):
    _, session = app.load(app.default)
    finetune(app, session)
    status, curve, session = app.reset(session)
    assert "pretrained" in status and curve["loss"].isna().all() and session.model is None
    assert session.current is session.base.model


def test_download_is_a_checkpoint_that_from_pretrained_loads(app, tmp_path):
    _, session = app.load(app.default)
    with pytest.raises(DemoError, match="fine-tune"):
        app.download(session)
    finetune(app, session)
    path = app.download(session)
    zipfile.ZipFile(path).extractall(tmp_path)
    loaded = GPT.from_pretrained(str(tmp_path / "copilot-finetuned"))
    assert same(weights(loaded), weights(session.model))
    assert CharTokenizer.from_pretrained(str(tmp_path / "copilot-finetuned")) == session.base.tokenizer
    workdir = session.workdir
    session.close()  # what gradio calls when the session ends
    assert not workdir.exists()


# ===================================================================== sessions
def test_sessions_are_isolated(app):
    _, first = app.load(app.default)
    _, second = app.load(app.default)
    assert first.base is second.base  # one copy of the pretrained weights in memory
    pretrained = weights(first.base.model)
    finetune(app, first)
    assert second.model is None and same(weights(second.current), pretrained)
    finetune(app, second, steps=10, lr=1e-4)
    assert not same(weights(first.model), weights(second.model))
    _, second = app.load(app.checkpoints[1], second)  # another model for one session only
    assert first.base.location != second.base.location


def test_generation_while_another_session_trains_does_not_break_training(app):
    """A generation (under no_grad) in one thread while another session trains: grad mode is per
    thread, so the training step still records its graph and the fine-tune completes."""
    _, trainer = app.load(app.default)
    _, talker = app.load(app.default)
    stop = threading.Event()
    errors = []

    def chat():
        while not stop.is_set():
            try:
                app.generate("def ", 8, session=talker)
            except Exception as err:  # noqa: BLE001
                errors.append(err)

    thread = threading.Thread(target=chat)
    thread.start()
    try:
        updates = finetune(app, trainer, steps=60)
    finally:
        stop.set()
        thread.join()
    assert not errors and "Done: step 60/60" in updates[-1][0]


def test_fair_lock_serves_waiters_in_order_and_is_reentrant():
    lock, order = FairLock(), []
    with lock:
        with lock:  # re-entrant
            pass
        threads = [threading.Thread(target=lambda i=i: (lock.__enter__(), order.append(i), lock.__exit__()))
                   for i in range(5)]
        for t in threads:
            t.start()
            time.sleep(0.02)  # queue up in a known order
    for t in threads:
        t.join()
    assert order == list(range(5))


def test_fair_lock_with_two_slots_lets_two_threads_in_and_queues_the_third():
    lock, inside_now, most, order = FairLock(slots=2), [], [0], []
    release = threading.Event()

    def work(i):
        with lock:
            inside_now.append(i)
            most[0] = max(most[0], len(inside_now))
            order.append(i)
            release.wait(5)
            inside_now.remove(i)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
        time.sleep(0.05)
    assert sorted(inside_now) == [0, 1] and order == [0, 1]  # the third waits for a slot
    release.set()
    for t in threads:
        t.join()
    assert most[0] == 2 and order == [0, 1, 2]


# ===================================================================== look inside
def test_attention_weights_are_causal_and_reproduce_the_attention_output(folders):
    model = GPT.from_pretrained(folders["copilot"])
    tokenizer = CharTokenizer.python()
    ids = tokenizer.encode("def pantry_fill(jar, grams):")[-32:]
    for layer in range(model.config.n_layer):
        w = inside.attention_weights(model, ids, layer)  # (H, T, T)
        T = len(ids)
        assert w.shape == (2, T, T)
        np.testing.assert_allclose(w.sum(-1), 1.0, atol=1e-5)
        assert np.all(w[:, np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
        # weights @ v, heads side by side, through c_proj: the model's own attention output
        x = block_input(model, ids, layer)
        _, _, v = qkv_heads(model, x, layer)
        y = (w @ v).transpose(1, 0, 2).reshape(T, -1)  # (T, C)
        block = model.transformer.h[layer]
        ours = y @ block.attn.c_proj.weight.data + block.attn.c_proj.bias.data
        with tinytorch.no_grad():
            theirs = block.attn(block.ln_1(tinytorch.tensor(x[None]))).data[0]
        np.testing.assert_allclose(ours, theirs, atol=1e-5)


@tinytorch.no_grad()
def block_input(model, ids, layer: int) -> np.ndarray:
    """The residual stream entering block `layer`: (T, C), for a 1-D array of ids."""
    t = model.transformer
    ids = np.asarray(ids)[None, :]  # (1, T)
    x = t.wte(ids) + t.wpe(np.arange(ids.shape[1]))  # (1, T, C)
    for block in list(t.h)[:layer]:
        x = block(x)
    return x.data[0]


def qkv_heads(model, x: np.ndarray, layer: int):
    """q, k, v of block `layer` for its input x (T, C), by hand: three arrays (H, T, D)."""
    block = model.transformer.h[layer]
    ln = block.ln_1
    h = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + ln.eps) * ln.weight.data + ln.bias.data
    qkv = h @ block.attn.c_attn.weight.data + block.attn.c_attn.bias.data  # (T, 3C)
    T, C3 = qkv.shape
    H = block.attn.n_head
    return qkv.reshape(T, 3, H, C3 // 3 // H).transpose(1, 2, 0, 3)  # 3 x (H, T, D)


def test_attention_weights_are_the_textbook_softmax(folders):
    """The weights the model hands back equal softmax(q k^T / sqrt(D)) with the future masked,
    computed by hand from the layer's parameters."""
    model = GPT.from_pretrained(folders["copilot"])
    ids = CharTokenizer.python().encode("class Jar:\n    def fill(self, grams):\n        self.")[-32:]
    for layer in range(model.config.n_layer):
        q, k, _ = qkv_heads(model, block_input(model, ids, layer), layer)
        scores = q @ k.transpose(0, 2, 1) / np.sqrt(q.shape[-1])  # (H, T, T)
        T = scores.shape[-1]
        scores = np.where(np.tril(np.ones((T, T), dtype=bool)), scores, -np.inf)
        expected = np.exp(scores - scores.max(-1, keepdims=True))
        expected /= expected.sum(-1, keepdims=True)
        np.testing.assert_allclose(inside.attention_weights(model, ids, layer), expected, atol=1e-6)


def test_look_inside_handler_and_next_character_probabilities(app):
    html, probs = app.attention("def pantry_fill(jar):\n    return ", 1, 1)
    assert "layer 1, head 1" in html and "masked" in html
    assert 0 < sum(probs.values()) <= 1 + 1e-9 and len(probs) == 10
    assert list(probs.values()) == sorted(probs.values(), reverse=True)
    with pytest.raises(DemoError, match="Layer"):
        app.attention("def ", 2, 0)
    with pytest.raises(DemoError, match="Head"):
        app.attention("def ", 0, 7)


def test_next_char_probs_are_the_model_softmax(folders):
    model = GPT.from_pretrained(folders["copilot"])
    tokenizer = CharTokenizer.python()
    ids = tokenizer.encode("import o")
    probs = inside.next_char_probs(model, tokenizer, ids, top=model.config.vocab_size)
    logits = model(np.array([ids])).data[0, -1].astype(np.float64)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    assert abs(sum(probs.values()) - 1) < 1e-6
    assert max(probs.values()) == pytest.approx(expected.max(), rel=1e-5)


# ===================================================================== examples and prompts
@pytest.mark.parametrize("name", sorted(common.examples()))
def test_each_example_has_own_names_prompts_and_cases(name):
    text = common.examples()[name]
    tokenizer = CharTokenizer.python()
    assert not tokenizer.unknown_chars(text) and len(text) < common.MAX_TEXT_CHARS
    prompts = names.default_prompts(text)
    assert len(prompts) == 4 and all(p.split("\n")[-1].strip() for p in prompts)
    assert names.parse_prompts(names.format_prompts(prompts)) == prompts
    cases = names.completion_cases(text)
    assert len(cases) >= 12 and all(len(rest) >= 1 for _, rest in cases)
    compile(text, name, "exec")  # real Python, in the house style


# ===================================================================== level 1
@pytest.fixture
def level1(folders):
    return Level1(folders["level1"])


def test_level1_evaluate_then_train_from_scratch_memorizes_the_pairs(level1):
    table = level1.default_table()
    results, accuracy, session = level1.evaluate(table)
    assert len(results.data) == 12 and "/12 correct" in accuracy
    updates = list(level1.train(table, FROM_SCRATCH, 150, 1e-2, 0, session))
    status, curve, results, accuracy, session = updates[-1]
    assert "12/12 correct" in accuracy and (results.data["right?"] == "✓").all()
    assert curve["loss"].iloc[-1] < curve["loss"].iloc[0]
    assert level1.evaluate(table, session)[0].data["answer"].tolist() == results.data["answer"].tolist()


def test_level1_from_the_checkpoint_and_its_pairs(level1):
    assert level1.default_pairs() == list(DEFAULT_TASKS)
    updates = list(level1.train([["abcd", "dcba"], ["", ""], ["1111", "2222"]], FROM_CHECKPOINT, 10, 1e-2, 0))
    assert "checkpoint" in updates[-1][3] and len(updates[-1][2].data) == 2  # lower case accepted, blank row skipped


@pytest.mark.parametrize("table, message", [
    ([["ABC", "DEFG"]], "Row 1"), ([["ABCD", "DEF!"]], "Row 1"), ([["", ""]], "empty"),
    ([["ABCD", "AAAA"], ["ABCD", "BBBB"]], "more than once"), ("nonsense", "Row 1"), (42, "table"),
])
def test_level1_bad_tables_are_refused(level1, table, message):
    with pytest.raises(DemoError, match=message):
        level1.evaluate(table)


def test_level1_bad_training_settings(level1):
    table = level1.default_table()
    for args, message in [((FROM_SCRATCH, 0), "Steps"), ((FROM_SCRATCH, 10, 50.0), "Learning rate"),
                          (("sideways", 10), "Start from")]:
        with pytest.raises(DemoError, match=message):
            list(level1.train(table, *args))
    with pytest.raises(DemoError, match="random weights instead"):
        list(Level1("/nonexistent/level1").train(table, FROM_CHECKPOINT, 10))


# ===================================================================== the shipped checkpoints
@pytest.mark.parametrize("name", ["copilot", "copilot-tiny"])
def test_shipped_copilot_smoke(name):
    if not common.shipped(name).is_dir():
        pytest.skip(f"checkpoints/{name} not created yet (python -m pretrain {name})")
    app = Copilot([name])
    card, session = app.load(name)
    assert "parameters" in card
    assert len(app.generate("def ", 8, 0.0, mode="sample", session=session)[1]["completion"]) == 8
    assert app.generate("def ", session=session)[1]["completion"].strip()  # a line of something
    app.attention("import os\n", 0, 0, session)


def test_shipped_level1_knows_its_pairs():
    if not common.shipped("level1").is_dir():
        pytest.skip("checkpoints/level1 not created yet (python -m pretrain level1)")
    app = Level1()
    _, accuracy, _ = app.evaluate(app.default_table())
    assert "12/12 correct" in accuracy


def test_a_slow_load_holds_up_only_those_waiting_for_it(folders, monkeypatch):
    store = common.ModelStore()
    store.get(folders["copilot"], [folders["copilot"]])
    real, release = store._load, threading.Event()

    def slow(source, location):
        if location == folders["other"]:
            release.wait(10)  # a Hub download taking its time
        return real(source, location)

    monkeypatch.setattr(store, "_load", slow)
    waiting = [threading.Thread(target=store.get, args=(folders["other"], [folders["other"]])) for _ in range(2)]
    for t in waiting:
        t.start()
    start = time.perf_counter()
    assert store.get(folders["copilot"], [folders["copilot"]]).model is not None  # not blocked
    assert time.perf_counter() - start < 1
    release.set()
    for t in waiting:
        t.join()
    assert store.get(folders["other"], [folders["other"]]) is store._models[folders["other"]]


def test_the_default_learning_rate_follows_the_model_width(app):
    from demos.copilot import recommended_lr

    _, session = app.load(app.default)
    list(app.finetune(PANTRY, 10, None, 4, session=session))
    assert session.settings["lr"] == recommended_lr(session.base.model.config) == 1e-4  # n_embd 16
    assert recommended_lr(GPTConfig(n_embd=96, n_head=4)) == 1e-4  # the copilot
    assert recommended_lr(GPTConfig(n_embd=192, n_head=6)) == 5e-5  # copilot-large


# ===================================================================== fuzz: a message or a result, never a crash
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

ANYTHING = st.one_of(st.none(), st.text(max_size=40), st.integers(-10**9, 10**9),
                     st.floats(allow_nan=True, allow_infinity=True), st.booleans())
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(prompt=st.one_of(st.text(max_size=80), ANYTHING), settings_=st.tuples(ANYTHING, ANYTHING, ANYTHING,
                                                                            ANYTHING, ANYTHING))
def test_fuzz_generate(app, prompt, settings_):
    try:
        html, details, _ = app.generate(prompt, *settings_)
    except DemoError as err:
        assert str(err) and "Traceback" not in str(err)
    else:
        assert details["prompt"] in html or "&" in html  # escaped HTML may differ


@FUZZ
@given(text=st.one_of(st.text(max_size=300), ANYTHING), steps=ANYTHING, lr=ANYTHING, batch=ANYTHING)
def test_fuzz_finetune_settings(app, text, steps, lr, batch):
    _, session = app.load(app.default)
    try:
        list(app.finetune(text, steps, lr, batch, session=session))
    except DemoError as err:
        assert str(err)


@FUZZ
@given(table=st.one_of(ANYTHING, st.lists(st.lists(ANYTHING, max_size=3), max_size=5)))
def test_fuzz_level1_table(level1, table):
    try:
        level1.evaluate(table)
    except DemoError as err:
        assert str(err)


# ===================================================================== own lines
def test_line_cases_start_after_the_indentation_and_skip_comments_and_short_lines():
    text = "import os\n\n\ndef read(path):\n    # a comment that is long\n    with open(path) as f:\n        pass\n"
    assert lines.line_cases(text) == [
        ("import os\n\n\n", "def read(path):"),
        ("import os\n\n\ndef read(path):\n    # a comment that is long\n    ", "with open(path) as f:"),
    ]
    many = "\n".join(f"value_{i} = {i}" for i in range(40))
    spread = lines.line_cases(many, limit=4)
    assert [rest for _, rest in spread] == ["value_1 = 1", "value_10 = 10", "value_20 = 20", "value_30 = 30"]
