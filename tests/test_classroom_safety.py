"""The Copilot demo as one server shared by a class, tried as an attacker would: crafted checkpoints
on a loopback Hub, tab-filled prompts, a pathological upload, students who leave. Each is answered
with a message (naming only what the student gave) and leaves nothing behind: no model, no
gradient, no temporary folder, no server path on the page."""

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path

import numpy as np
import pytest

from demos import common, names, sessions, views
from demos.common import DemoError, ModelStore
from demos.copilot import Copilot
from tinytorch import checkpoint
from tinytorch.checkpoint import save_pretrained, write_weights
from tinytorch.nn import GPT, GPTConfig
from tinytorch.text import CharTokenizer

from test_demos import PANTRY, finetune, make_copilot  # noqa: F401
from test_hub import hub, hub_env  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_copilot(tmp_path_factory.mktemp("classroom") / "copilot")


@pytest.fixture
def app(folder):
    return Copilot([str(folder)], store=ModelStore(max_parameters=100_000))


def files_of(folder, **config_changes) -> dict:
    """The files of `folder` as FakeHub.add_commit takes them, with config.json changed."""
    files = {p.name: p.read_bytes() for p in Path(folder).iterdir() if p.is_file()}
    values = json.loads(files["config.json"])
    for key, value in config_changes.items():
        if key == "tab_size":
            values["tokenizer"]["tab_size"] = value
        else:
            values[key] = value
    files["config.json"] = json.dumps(values).encode()
    return files


def weight_downloads(hub) -> list[str]:
    return [r.path for r in hub.requests if r.method == "GET" and r.path.endswith("model.safetensors")]


# ================================================================== 1. tabs: limits after normalization
def test_prompt_and_training_text_limits_count_the_expanded_tabs():
    tokenizer = CharTokenizer.python()  # tab_size 4
    with pytest.raises(DemoError, match=r"^The prompt has 36,004 characters \(tabs counted as 4 spaces\); "
                                        r"the limit is 10,000"):
        common.check_prompt("\t" * 9000 + "def ", tokenizer)  # 9,004 characters as typed
    with pytest.raises(DemoError, match=r"^The training text has 120,006 characters \(tabs counted as 4 spaces\); "
                                        r"the limit is 100,000"):
        common.check_training_text("\t" * 30_000 + "x = 1\n", tokenizer)
    assert common.check_prompt("\tdef ", tokenizer) == "    def "  # what the model sees
    assert common.check_prompt("x\r\n" * 5000, tokenizer) == "x\n" * 5000  # 15,000 typed, 10,000 seen


def test_a_hub_config_with_a_huge_tab_size_is_refused_at_load(app, hub_env, folder):
    hub_env.add_commit("me/tabs", files_of(folder, tab_size=100_000))
    with pytest.raises(DemoError, match=r"^Could not load 'me/tabs': me/tabs/config.json: bad 'tokenizer' entry "
                                        r"\(tab_size must be a whole number from 1 to 16, got 100000\)$"):
        app.load("me/tabs")
    assert weight_downloads(hub_env) == []


# ================================================================== 2, 3. sizes and the cap, before downloading
def test_a_student_cannot_make_the_server_download_or_build_a_big_model(app, hub_env, folder, monkeypatch, tmp_path):
    hub_env.add_commit("me/layers", files_of(folder, n_layer=10**6))
    hub_env.add_commit("me/llama", {**files_of(folder, model_type="llama"), "model.safetensors": b"\0" * 3_000_000})
    config = GPTConfig(vocab_size=98, n_positions=32, n_embd=64, n_layer=2, n_head=2)  # 0.11M > the 0.1M cap
    big = save_pretrained(GPT(config), tmp_path / "big", tokenizer=CharTokenizer.python())
    hub_env.add_commit("me/big", {p.name: p.read_bytes() for p in big.iterdir()})

    monkeypatch.setattr(checkpoint, "expected_shapes", lambda *a: pytest.fail("built the shape table"))
    with pytest.raises(DemoError, match=r"me/layers/config.json: n_layer is 1,000,000; tinytorch loads 1 to 1,024"):
        app.load("me/layers")
    with pytest.raises(DemoError, match=r"me/llama/config.json: model_type 'llama', expected 'gpt2'"):
        app.load("me/llama")
    count = checkpoint.parameter_count(config)
    with pytest.raises(DemoError, match=rf"me/big/config.json: describes a model of {count:,} parameters; "
                                        r"the limit here is 100,000$"):
        app.load("me/big")
    assert weight_downloads(hub_env) == []


def test_a_hub_model_lives_only_while_sessions_hold_it(app, hub_env, folder):
    hub_env.add_commit("me/tiny", files_of(folder))
    _, first = app.load("me/tiny")
    _, second = app.load("me/tiny")
    assert first.base is second.base  # one copy for both students
    loaded = weakref.ref(first.base)
    first.close()
    assert app.store.get("me/tiny") is second.base  # still held by the second
    second.close()
    gc.collect()
    assert loaded() is None  # the store let it go with its last student


# ================================================================== 4. sessions: released, gradients dropped
def test_a_fine_tune_leaves_no_gradients(app):
    session = app.session(None)
    finetune(app, session, 10)
    assert session.model is not None and session.steps_trained == 10
    assert sum(p.grad is not None for p in session.model.parameters()) == 0


def test_closing_a_session_drops_its_models_and_files(app):
    session = app.session(None)
    finetune(app, session, 10)
    archive = Path(app.download(session))
    assert archive.is_file() and archive.suffix == ".zip"
    assert not (archive.parent / "copilot-finetuned").exists()  # only the zip is kept on disk
    session.close()
    assert not archive.parent.exists() and session.model is None and session.base is None
    assert str(archive.parent) not in common._TEMP_FOLDERS


# ================================================================== 5. work linear in the upload
class CountingPattern:
    """A compiled regex that adds up how many characters its scans covered."""

    def __init__(self, pattern, counter):
        self.pattern, self.counter = pattern, counter

    def finditer(self, text, *args):
        self.counter[0] += len(text)
        return self.pattern.finditer(text, *args)


def test_default_prompts_scan_the_text_a_fixed_number_of_times(monkeypatch):
    body = "".join(f"def x{i:04d}_helper():\n" for i in range(11_000))
    text = f'DOC = """\n{body}"""\n\ndef real_helper(x):\n    return real_helper(x)\n'  # 99 KB of names in a string
    scanned = [0]
    for name in ("DEFINED", "USE"):  # the module's compiled patterns
        if hasattr(names, name):
            monkeypatch.setattr(names, name, CountingPattern(getattr(names, name), scanned))
    real_re = names.re

    class CountingRe:
        def __getattr__(self, attr):
            return getattr(real_re, attr)

        def finditer(self, pattern, text, *args):
            scanned[0] += len(text)
            return real_re.finditer(pattern, text, *args)

    monkeypatch.setattr(names, "re", CountingRe())
    # the use in code (not the definition, nor the 11,000 names inside the string), after its line
    assert names.default_prompts(text) == ["def real_helper(x):\n    return rea"]
    assert scanned[0] <= 4 * len(text)  # the old code scanned the whole text once per name: 11,001 times


# ================================================================== 6. non-finite weights
def test_nan_weights_from_the_hub_are_refused_naming_the_tensor(app, hub_env, folder, tmp_path):
    state = GPT.from_pretrained(folder).state_dict()
    state["transformer.h.0.attn.c_proj.weight"][0, 0] = np.nan
    write_weights(tmp_path / "model.safetensors", state)
    hub_env.add_commit("me/nan", {**files_of(folder), "model.safetensors": (tmp_path / "model.safetensors").read_bytes()})
    with pytest.raises(DemoError, match=r"^Could not load 'me/nan': me/nan/model.safetensors: tensor "
                                        r"transformer.h.0.attn.c_proj.weight holds 1 NaN or infinite value"):
        app.load("me/nan")


# ================================================================== 7. escaping
IMG = '<img src=x onerror="alert(1)" id=pwned>'


def test_everything_from_a_config_is_shown_as_text():
    config = {"n_layer": IMG, "n_head": 2, "n_embd": 8, "n_positions": 8, "vocab_size": 11,
              "provenance": {"tasks_right": IMG, "tasks_total": 3, "corpus": {"train_chars": IMG, "root": IMG},
                             IMG: "[click](javascript:alert(1))", "steps": IMG}}
    card = views.model_card(IMG, config, 10, "")
    assert "<img" not in card and "](" not in card and "javascript:" not in card
    shown = "&#60;img src=x onerror=&#34;alert&#40;1&#41;&#34; id=pwned&#62;"  # reads as IMG on the page
    assert card.count(shown) >= 5  # the label, n_layer, tasks_right, the corpus, the provenance rows
    assert f"<code>{shown}</code>" in card


def test_error_toasts_are_escaped():
    from demos.ui import message

    assert "<img" not in str(message(DemoError(f"model_type {IMG!r}")).message)
    assert "&lt;img" in str(message(DemoError(IMG)).message)
    hidden = message(OSError(2, "No such file", "/srv/secret/place"))
    assert "/srv/secret" not in str(hidden.message) and "FileNotFoundError" in str(hidden.message)


def test_html_from_a_hub_config_never_reaches_the_page(folder, hub_env):
    """A real browser loads two crafted Hub repos: one whose provenance carries an <img>, one whose
    model_type does (refused, so it lands in the error toast). Both show as text; neither is an element."""
    pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
    from demos.screenshots import CHROMIUM, browser_page, visible

    if not os.path.exists(CHROMIUM):
        pytest.skip(f"{CHROMIUM} not found")
    from demos.app import build_app
    from demos.ui import launch_kwargs
    from test_demos_app import free_port

    card_img, toast_img = "<img src=x id=pwned-card>", "<img src=x id=pwned-toast>"
    hub_env.add_commit("me/card", files_of(folder, provenance={"tasks_right": card_img, "tasks_total": 1}))
    hub_env.add_commit("me/toast", files_of(folder, model_type=toast_img))
    demo = build_app(("copilot",), copilot_checkpoints=[str(folder)])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    try:
        with browser_page() as page:
            page.goto(url)
            visible(page, "parameters")
            assert str(folder) not in page.inner_text("body")  # the instructor's folder, by its name only
            for repo, img in [("me/card", card_img), ("me/toast", toast_img)]:
                source = page.locator("input[role=combobox]").first
                source.fill(repo)
                source.press("Enter")
                page.get_by_role("button", name="Load", exact=True).click()
                visible(page, f"{img}/1 pairs right" if repo == "me/card" else f"model_type '{img}'")
                assert page.locator("#pwned-card, #pwned-toast").count() == 0
    finally:
        demo.close()


# ================================================================== 8. no oracle, no server paths
def test_load_answers_the_same_whatever_exists_on_the_server(app, hub_env, tmp_path, monkeypatch):
    (tmp_path / "exists").mkdir()
    (tmp_path / "exists" / "file.py").write_text("x = 1\n")
    (tmp_path / "exists" / "folder").mkdir()
    monkeypatch.chdir(tmp_path)
    answers = set()
    for source in ["exists/file.py", "exists/folder", "exists/nothing", "nothing/nothing"]:
        with pytest.raises(DemoError) as err:
            app.load(source)
        answers.add(str(err.value).replace(source, "NAME"))
    assert len(answers) == 1, answers
    assert "NAME: no such model repo on the Hub" in answers.pop()
    for source in ["/etc/passwd", "../x", "~/x"]:
        with pytest.raises(DemoError, match="is not a Hub repo id"):
            app.load(source)


def test_load_errors_never_show_server_paths(hub_env, folder, tmp_path):
    from huggingface_hub import constants

    broken = Path(tmp_path / "broken")
    broken.mkdir()
    for p in Path(folder).iterdir():
        (broken / p.name).write_bytes(p.read_bytes())
    state = GPT.from_pretrained(folder).state_dict()
    state["transformer.wte.weight"][1, 1] = np.inf
    write_weights(broken / "model.safetensors", state)
    hub_env.add_commit("me/inf", {p.name: p.read_bytes() for p in broken.iterdir()})
    app = Copilot([str(folder), str(broken)])
    messages = []
    for source in [str(broken), "me/inf"]:
        with pytest.raises(DemoError) as err:
            app.load(source)
        messages.append(str(err.value))
    assert messages[0].startswith("Could not load 'broken': broken/model.safetensors: tensor transformer.wte.weight")
    assert messages[1].startswith("Could not load 'me/inf': me/inf/model.safetensors: tensor transformer.wte.weight")
    for text in messages:
        assert str(tmp_path) not in text and str(constants.HF_HUB_CACHE) not in text and str(ROOT) not in text
    with pytest.raises(DemoError) as err:
        Copilot(["copilot-not-here"]).generate("def ")
    assert str(ROOT) not in str(err.value) and "checkpoints/copilot-not-here is missing" in str(err.value)


# ================================================================== 9. one line from a deep config
def test_a_deeply_nested_hub_config_is_one_message(app, hub_env, folder):
    files = files_of(folder, provenance="X")
    files["config.json"] = files["config.json"].replace(b'"X"', b"[" * 50_000 + b"]" * 50_000)
    hub_env.add_commit("me/deep", files)
    with pytest.raises(DemoError, match=r"^Could not load 'me/deep': me/deep/config.json: nested more than 32 "
                                        r"levels deep"):
        app.load("me/deep")


# ================================================================== the real server
def test_sessions_are_released_when_students_leave_or_idle(folder, monkeypatch):
    """A real server: a client fine-tunes and downloads, then leaves (close()); another goes idle.
    Both sessions go (models, folders) within a sweep, and the server still serves."""
    from gradio_client import Client

    from demos.app import build_app
    from demos.ui import launch_kwargs
    from test_demos_app import free_port, session_of

    monkeypatch.setattr(sessions, "GRACE_SECONDS", 0.5)
    monkeypatch.setattr(sessions, "SWEEP_SECONDS", 0.2)
    monkeypatch.setattr(sessions, "IDLE_SECONDS", 3600)
    demo = build_app(("copilot",), copilot_checkpoints=[str(folder)])
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    try:
        leaving, idle = Client(url, verbose=False), Client(url, verbose=False)
        leaving.predict(PANTRY, 10, None, 4, api_name="/finetune")
        archive = Path(leaving.predict(api_name="/download"))
        session = session_of(demo, leaving)
        workdir = session.workdir
        assert session.model is not None and workdir.is_dir() and archive.is_file()
        idle.predict("def ", 3, api_name="/generate")

        leaving.close()  # ends its heartbeat: gradio runs the unload event
        wait_for(lambda: leaving.session_hash not in demo.state_holder.session_data)
        assert session.model is None and session.base is None and not workdir.exists()
        assert idle.session_hash in demo.state_holder.session_data  # the other student stays

        monkeypatch.setattr(sessions, "IDLE_SECONDS", 0.5)  # and goes once idle
        wait_for(lambda: idle.session_hash not in demo.state_holder.session_data)
        monkeypatch.setattr(sessions, "IDLE_SECONDS", 3600)
        assert idle.predict("def ", 3, api_name="/generate")[1]["prompt"] == "def "  # a fresh session
        idle.close()
    finally:
        demo.close()


def wait_for(condition, timeout: float = 60.0) -> None:
    """Poll until condition() holds (not a timing assertion: the timeout only bounds a failure)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.1)


def test_ctrl_c_removes_every_session_folder(folder, tmp_path):
    """python -m demos as a teacher runs it: a student downloads a fine-tune, then Ctrl-C (SIGINT)
    and `kill` (SIGTERM) leave no tinytorch-demo-* folder behind. The server is started with
    SIGINT ignored, as a script's background job is (pytest itself may be one): it must stop all
    the same."""
    from gradio_client import Client

    from test_demos_app import free_port

    for sig in (signal.SIGINT, signal.SIGTERM):
        temp = tmp_path / f"tmp-{sig.name}"
        temp.mkdir()
        port = free_port()
        env = {**os.environ, "TMPDIR": str(temp), "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1",
               "GRADIO_TEMP_DIR": str(temp / "gradio")}
        server = subprocess.Popen([sys.executable, "-X", "faulthandler", "-u", "-m", "demos", "copilot", "--checkpoint", str(folder),
                                   "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True,
                                  preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        printed = []
        try:
            for line in server.stdout:
                printed.append(line)
                if "running at" in line:
                    break
            # keep reading what it prints, so that a full pipe never blocks it
            threading.Thread(target=lambda: printed.extend(server.stdout), daemon=True).start()
            client = Client(f"http://127.0.0.1:{port}/", verbose=False)
            client.predict(PANTRY, 10, None, 4, api_name="/finetune")
            client.predict(api_name="/download")
            assert [p.name.startswith("tinytorch-demo-") for p in temp.iterdir()].count(True) == 1
            server.send_signal(sig)
            try:
                code = server.wait(60)
            except subprocess.TimeoutExpired:  # what its threads are doing, on the way out
                server.send_signal(signal.SIGABRT)
                server.wait(10)
                code = "still running after 60 s"
            assert code == 0, "".join(printed[-200:])
        finally:
            if server.poll() is None:
                server.kill()
        assert [p.name for p in temp.iterdir() if p.name.startswith("tinytorch-demo-")] == []


def test_the_number_of_hub_models_in_memory_is_bounded(folder, hub_env):
    for name in ("one", "two", "three"):
        hub_env.add_commit(f"me/{name}", files_of(folder))
    app = Copilot([str(folder)], store=ModelStore(max_hub_models=2))
    _, first = app.load("me/one")
    _, second = app.load("me/two")
    with pytest.raises(DemoError, match=r"^Students have 2 other Hub models loaded, as many as this server holds"):
        app.load("me/three")
    assert app.load("me/one")[1].base is first.base  # one already in memory is shared, not counted again
    first.close()
    del first
    gc.collect()
    assert app.load("me/three")[1].base.source == "me/three"  # room again once its students left
