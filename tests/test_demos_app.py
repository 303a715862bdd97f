"""The demos as a student's browser or a script reaches them: a launched app on 127.0.0.1 driven
through its API with gradio_client. Every button's api_name, a streamed fine-tune, sessions that
never see each other's weights, and bad input answered with a message while the app keeps serving.
"""

import os
import time
from pathlib import Path

import numpy as np
import pytest

gradio = pytest.importorskip("gradio", reason="gradio not installed")
gradio_client = pytest.importorskip("gradio_client", reason="gradio_client not installed")

from gradio_client import Client, handle_file  # noqa: E402
from gradio_client.exceptions import AppError  # noqa: E402

from demos import training  # noqa: E402
from demos.app import build_app  # noqa: E402
from demos.common import examples  # noqa: E402
from demos.screenshots import free_port  # noqa: E402
from demos.copilot import CopilotSession  # noqa: E402
from demos.level1 import Level1Session  # noqa: E402
from demos.ui import launch_kwargs  # noqa: E402

from test_demos import make_copilot, make_level1  # noqa: E402

# gradio's own queue code trips pandas 3 deprecation warnings; they are not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
PANTRY = examples()["pantry.py"]
ENDPOINTS = {"/load", "/generate", "/finetune", "/stop", "/compare", "/reset", "/download", "/attention",
             "/train", "/evaluate", "/level1_stop"}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(demo, url): both demos on tiny checkpoints, on a free port of 127.0.0.1."""
    root = tmp_path_factory.mktemp("served")
    copilot = str(make_copilot(root / "copilot"))
    level1 = str(make_level1(root / "level1"))
    demo = build_app(copilot_checkpoints=[copilot], level1_checkpoint=level1)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    assert url.startswith("http://127.0.0.1:")
    yield demo, url
    demo.close()


@pytest.fixture
def client(served):
    return Client(served[1], verbose=False)


def session_of(demo, client, kind=CopilotSession):
    """The server-side session object of this client (gr.State, kept by gradio per session hash)."""
    state = demo.state_holder[client.session_hash]
    found = [v for v in state.state_data.values() if isinstance(v, kind)]
    assert len(found) == 1
    return found[0]


def weights(model) -> dict:
    return {name: value.copy() for name, value in model.state_dict().items()}


def test_every_button_has_its_stable_api_name(client):
    assert ENDPOINTS <= set(client.view_api(print_info=False, return_format="dict")["named_endpoints"])


def test_load_generate_finetune_compare_reset(served, client):
    demo, _ = served
    card = client.predict(offered(client), api_name="/load")
    assert "parameters" in card
    html, details = client.predict("def ", 10, 0.0, 0, 1.0, 0, api_name="/generate")
    assert details["prompt"] == "def " and "written by the model" in html

    job = client.submit(PANTRY, 50, 3e-3, 4, api_name="/finetune")
    updates = list(job)
    assert len(updates) >= 2  # streamed: the start, then the end (and progress between)
    status, curve = job.outputs()[-1]
    assert "Done: step 50/50" in status
    assert session_of(demo, client).steps_trained == 50

    html, details = client.predict("", api_name="/compare")  # prompts drawn from the training text
    assert len(details["rows"]) == 4 and "Fine-tuned" in html
    memorized, held = details["memorized"], details["held_out"]
    assert memorized["bits_per_char"]["finetuned"] < memorized["bits_per_char"]["pretrained"]
    assert held["bits_per_char"]["finetuned"] <= held["bits_per_char"]["pretrained"]  # the best held-out step kept

    path = client.predict(api_name="/download")
    assert Path(path).suffix == ".zip"

    status, curve = client.predict(api_name="/reset")
    assert "pretrained" in status and session_of(demo, client).model is None
    with pytest.raises(AppError, match="fine-tune"):
        client.predict("", api_name="/compare")

    html, probs = client.predict("def pantry_fill(jar):", 1, 0, api_name="/attention")
    assert "layer 1, head 0" in html and probs["label"]


def offered(client):
    """The one checkpoint the served app offers (the dropdown's first choice)."""
    params = client.view_api(print_info=False, return_format="dict")["named_endpoints"]["/load"]["parameters"]
    return params[0]["parameter_default"]


def test_sessions_are_isolated(served):
    demo, url = served
    first, second = Client(url, verbose=False), Client(url, verbose=False)
    second.predict("def ", 5, api_name="/generate")  # second has a session, on the shared model
    shared = session_of(demo, second).current
    before = weights(shared)
    list(first.submit(PANTRY, 20, 3e-3, 4, api_name="/finetune"))
    mine, theirs = session_of(demo, first), session_of(demo, second)
    assert mine is not theirs and theirs.model is None
    assert all(np.array_equal(before[k], v) for k, v in weights(theirs.current).items())
    assert any(not np.array_equal(before[k], v) for k, v in weights(mine.model).items())
    assert mine.base.model is theirs.current  # one pretrained copy for everyone


@pytest.mark.parametrize("args, api, message", [
    (("",), "/generate", "empty"),
    (("print('café')",), "/generate", "never seen"),
    (("x\x00y",), "/generate", "never seen"),
    ((PANTRY, 1000, 3e-3, 4), "/finetune", "300"),  # the slider's own bound
    ((PANTRY, 50, 10.0, 4), "/finetune", "Learning rate"),
    ((PANTRY, 50, -1.0, 4), "/finetune", "Learning rate"),
    (("x" * 150_000, 50, 3e-3, 4), "/finetune", "limit"),
    (("../../etc",), "/load", "not a Hub repo id"),
    (("", 3, 0), "/attention", "empty"),
])
def test_bad_input_is_a_message_and_the_app_keeps_serving(client, args, api, message):
    with pytest.raises(AppError, match=message):
        client.predict(*args, api_name=api)
    assert client.predict("def ", 3, api_name="/generate")[1]["completion"] is not None


def test_uploads_huge_or_binary_are_refused(client, tmp_path):
    (tmp_path / "blob.py").write_bytes(bytes(range(256)) * 10)
    (tmp_path / "huge.py").write_text("x = 1\n" * 60_000)
    (tmp_path / "mine.py").write_text("def my_helper():\n    return my_helper_value\n" * 3)
    with pytest.raises(AppError, match="binary"):
        client.predict(handle_file(str(tmp_path / "blob.py")), api_name="/upload")
    with pytest.raises(AppError, match="KB"):
        client.predict(handle_file(str(tmp_path / "huge.py")), api_name="/upload")
    choice, text, prompts = client.predict(handle_file(str(tmp_path / "mine.py")), api_name="/upload")
    assert text.startswith("def my_helper") and "my_" in prompts


def test_level1_evaluate_and_train(served, client):
    demo, _ = served
    table = {"headers": ["input", "output"], "data": [["ABCD", "DCBA"], ["1234", "4321"]]}
    results, accuracy = client.predict(table, api_name="/evaluate")
    assert len(results["data"]) == 2 and "/2 correct" in accuracy
    job = client.submit(table, "random weights (from scratch)", 100, 1e-2, 0, api_name="/train")
    list(job)
    status, curve, results, accuracy = job.outputs()[-1]
    assert "2/2 correct" in accuracy and "Done" in status
    assert session_of(demo, client, Level1Session).origin.endswith("then 100 steps")
    with pytest.raises(AppError, match="Row 1"):
        client.predict({"headers": ["input", "output"], "data": [["AB", "CD"]]}, api_name="/evaluate")


def test_stop_ends_a_streaming_finetune_and_keeps_its_steps(served, client, monkeypatch):
    demo, _ = served
    real_step = training.train_step

    def slow_step(*args, **kwargs):  # 300 steps of a tiny model would end before Stop arrives
        time.sleep(0.02)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(training, "train_step", slow_step)
    job = client.submit(PANTRY, 300, 3e-3, 4, api_name="/finetune")
    for update in job:
        if "Training: step" in update[0]:
            client.predict(api_name="/stop")
            break
    deadline = time.monotonic() + 20
    while not job.done() and time.monotonic() < deadline:
        time.sleep(0.05)
    status, _ = job.outputs()[-1]
    steps = session_of(demo, client).steps_trained
    assert "Stopped at step" in status and 0 < steps < 300


def test_python_m_demos_binds_127_0_0_1_never_shares_and_prints_the_url(monkeypatch, capsys):
    import demos.__main__ as cli
    import demos.app

    for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):  # main() sets them if unset:
        monkeypatch.setenv(name, os.environ.get(name, "1"))  # keep this process's environment as it was
    monkeypatch.setattr(cli, "configure_process", lambda: None)  # and its malloc

    launched = {}

    class FakeDemo:
        def launch(self, **kwargs):
            launched.update(kwargs)
            return None, f"http://{kwargs['server_name']}:{kwargs['server_port']}/", None

        def block_thread(self):
            raise KeyboardInterrupt  # Ctrl+C

        def close(self):
            launched["closed"] = True

    built = []
    monkeypatch.setattr(demos.app, "build_app", lambda *args: built.append(args) or FakeDemo())
    cli.main(["level1", "--checkpoint", "my/level1-repo", "--port", "7999"])
    assert launched["server_name"] == "127.0.0.1" and launched["share"] is False and launched["closed"]
    assert built == [(("level1",), None, "my/level1-repo")]
    assert "http://127.0.0.1:7999/" in capsys.readouterr().out
    cli.main(["copilot", "--checkpoint", "me/copilot", "--host", "0.0.0.0"])
    assert launched["server_name"] == "0.0.0.0" and built[-1][1][0] == "me/copilot"


def test_building_the_app_loads_no_checkpoint(monkeypatch):
    from demos.common import ModelStore

    def refuse(self, source, location):
        raise AssertionError(f"loaded {location} while building the app")

    monkeypatch.setattr(ModelStore, "_load", refuse)
    demo = build_app()  # the shipped checkpoints, as the Space builds it at import
    assert demo.fns  # events wired; models wait for the first visitor


@pytest.mark.parametrize("port", ["abc", "0", "99999", "-1"])
def test_a_port_out_of_range_is_refused_by_the_parser(monkeypatch, capsys, port):
    """Before: 99999 was an OverflowError from bind(); GRADIO_SERVER_PORT=abc an int() traceback."""
    from demos.__main__ import build_parser

    for argv, env in ((["--port", port], None), ([], port)):
        if env is None:
            monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
        else:
            monkeypatch.setenv("GRADIO_SERVER_PORT", env)
        with pytest.raises(SystemExit) as stopped:
            build_parser().parse_args(argv)
        assert stopped.value.code == 2
        assert f"argument --port: {port!r} is not a port: a whole number from 1 to 65535" in capsys.readouterr().err
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7123")
    assert build_parser().parse_args([]).port == 7123


def test_a_host_that_names_no_address_is_refused_before_gradio(monkeypatch):
    """gradio said 'Cannot find empty port' for it, and the kit then asked whether another demo was
    running. `a..b` fails in the name codec, so the check reaches no DNS server."""
    import demos.__main__ as cli

    monkeypatch.setattr(cli, "prefer_one_blas_thread", lambda: None)
    with pytest.raises(SystemExit, match=r"Cannot serve on --host 'a\.\.b': it names no address .* Use 127\.0\.0\.1"):
        cli.main(["--host", "a..b"])
    cli.check_host("127.0.0.1")  # numeric: no lookup, no error
