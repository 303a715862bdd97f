"""tinytorch and the Hugging Face Hub: the real huggingface_hub client against FakeHub on 127.0.0.1.

Hermetic: every connection outside 127.0.0.1 fails the test, the Hub cache and token file live in
tmp_path, and the client's retries are off (a refused connection would otherwise cost ~23 s).
"""

import inspect
import logging
import socket

import numpy as np
import pytest

hf = pytest.importorskip("huggingface_hub", reason="huggingface_hub not installed")

from huggingface_hub import constants  # noqa: E402
from huggingface_hub.utils import _http  # noqa: E402

from tinytorch import hub as tt_hub  # noqa: E402
from tinytorch.checkpoint import CheckpointError, save_pretrained  # noqa: E402
from tinytorch.nn import GPT  # noqa: E402
from tinytorch.pretrained import push_folder  # noqa: E402
from tinytorch.text import CharTokenizer  # noqa: E402

from conftest import tiny_gpt  # noqa: E402
from hub_server import FakeHub  # noqa: E402

TOKEN = "hf_FakeSecretTokenThatMustNeverBeShown"
from tinytorch.shipped import SHIPPED  # noqa: E402
IDS = np.array([[2, 3, 4, 5, 6, 7, 8, 9]])


@pytest.fixture
def hub():
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def hub_env(hub, tmp_path, monkeypatch):
    """Point tinytorch and the client at `hub`, with a private cache, a token, no retries, no Internet."""
    real = socket.create_connection

    def loopback_only(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"connection attempt to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", loopback_only)
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)  # tinytorch.hub reads it per call
    monkeypatch.setattr(tt_hub, "_UNREACHABLE", {})  # no failed probe of an earlier test's (maybe same) port
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token-file"))
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    for fn in (_http.http_backoff, _http.http_stream_backoff):  # see tests/test_hub_server.py: no_retries
        monkeypatch.setitem(inspect.unwrap(fn).__kwdefaults__, "max_retries", 0)
    return hub


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # what HF_HUB_OFFLINE=1 at import sets


@pytest.fixture
def tokenizer():
    return CharTokenizer("abcdefgh\n")  # 11 ids, tiny_gpt's vocabulary


def checkpoint_files(tmp_path, model, tokenizer, name="ckpt") -> dict:
    """The files of a saved checkpoint, as FakeHub.add_commit takes them."""
    folder = save_pretrained(model, tmp_path / name, tokenizer=tokenizer)
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def logits(model):
    return model(IDS).data


# ================================================================== download
def test_from_pretrained_a_repo_id_downloads_into_the_cache(hub_env, tmp_path, tokenizer):
    model = tiny_gpt(seed=1)
    files = checkpoint_files(tmp_path, model, tokenizer)
    sha = hub_env.add_commit("org/name", files)

    loaded = GPT.from_pretrained("org/name")
    np.testing.assert_array_equal(logits(loaded), logits(model.eval()))
    assert CharTokenizer.from_pretrained("org/name") == tokenizer
    snapshot = tmp_path / "hub-cache" / "models--org--name" / "snapshots" / sha
    assert sorted(p.name for p in snapshot.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    assert (snapshot / "model.safetensors").read_bytes() == files["model.safetensors"]


def test_download_returns_the_snapshot_or_a_plain_copy(hub_env, tmp_path, tokenizer):
    files = checkpoint_files(tmp_path, tiny_gpt(), tokenizer)
    hub_env.add_commit("me/tiny", files)

    folder = tt_hub.download("me/tiny")
    assert folder.parent.name == "snapshots" and folder.name == hub_env.commits("me/tiny")[-1].sha
    copy = tt_hub.download("me/tiny", to=tmp_path / "here")
    assert copy == tmp_path / "here"
    assert {p.name: p.read_bytes() for p in copy.iterdir()} == files  # plain files, no .gitattributes
    assert not any(p.is_symlink() for p in copy.iterdir())
    tt_hub.download("me/tiny", to=tmp_path / "here")  # again, over the previous copy
    assert sorted(p.name for p in copy.iterdir()) == sorted(files)


def test_a_repo_without_a_model_card_downloads(hub_env, tmp_path, tokenizer):
    files = checkpoint_files(tmp_path, tiny_gpt(), tokenizer)
    del files["README.md"]
    hub_env.add_commit("me/no-card", files)
    assert sorted(p.name for p in tt_hub.download("me/no-card").iterdir()) == ["config.json", "model.safetensors"]


def test_revision_pinning(hub_env, tmp_path, tokenizer):
    old, new = tiny_gpt(seed=1), tiny_gpt(seed=2)
    old_sha = hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, old, tokenizer, "old"))
    hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, new, tokenizer, "new"))
    hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, old, tokenizer, "old"), revision="stable")

    np.testing.assert_array_equal(logits(GPT.from_pretrained("me/tiny")), logits(new.eval()))
    np.testing.assert_array_equal(logits(GPT.from_pretrained("me/tiny", revision=old_sha)), logits(old.eval()))
    np.testing.assert_array_equal(logits(GPT.from_pretrained("me/tiny", revision="stable")), logits(old))
    assert tt_hub.download("me/tiny", revision=old_sha).name == old_sha


def test_every_file_comes_from_the_commit_config_json_came_from(hub_env, tmp_path, tokenizer, monkeypatch):
    model = tiny_gpt(seed=1)
    first = hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, model, tokenizer))
    real_download = hf.hf_hub_download

    def someone_pushes_right_after_config_json(repo_id, filename, **kwargs):
        path = real_download(repo_id, filename, **kwargs)
        if filename == "config.json":
            hub_env.add_commit("me/tiny", {"model.safetensors": b"a newer commit's file"})
        return path

    monkeypatch.setattr(hf, "hf_hub_download", someone_pushes_right_after_config_json)
    folder = tt_hub.download("me/tiny")
    assert folder.name == first
    np.testing.assert_array_equal(logits(GPT.from_pretrained(folder)), logits(model.eval()))  # not a mix


@pytest.mark.parametrize("repo_id, revision, message", [
    ("me/nope", None, r"^me/nope: no such model repo on the Hub \(http://127\.0\.0\.1:\d+\), or it is private"),
    ("me/tiny", "no-such-branch", r"^me/tiny: has no revision 'no-such-branch' \(a branch, tag or commit sha\)$"),
    ("me/config-only", None, r"^me/config-only: has no model\.safetensors; a tinytorch checkpoint holds config\.json"),
    ("me/empty", None, r"^me/empty: has no config\.json"),
])
def test_hub_errors_are_one_clear_sentence(hub_env, tmp_path, tokenizer, repo_id, revision, message):
    files = checkpoint_files(tmp_path, tiny_gpt(), tokenizer)
    hub_env.add_commit("me/tiny", files)
    hub_env.add_commit("me/config-only", {"config.json": files["config.json"]})  # a valid config, no weights
    hub_env.create_repo("me/empty")
    with pytest.raises(CheckpointError, match=message) as err:
        GPT.from_pretrained(repo_id, revision=revision)
    assert "\n" not in str(err.value) and err.value.__cause__ is None
    assert hub_env.unknown_routes == []


# ================================================================== offline
def test_the_cache_serves_after_the_hub_stops(hub_env, tmp_path, tokenizer, monkeypatch):
    model = tiny_gpt(seed=1)
    hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, model, tokenizer))
    online = tt_hub.download("me/tiny")
    hub_env.stop()  # connections are refused from now on

    # Not told it is offline: the client fails to connect (once: no retries) and serves the cache.
    np.testing.assert_array_equal(logits(GPT.from_pretrained("me/tiny")), logits(model.eval()))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub_env.requests)
    assert tt_hub.download("me/tiny") == online
    assert CharTokenizer.from_pretrained("me/tiny") == tokenizer
    assert len(hub_env.requests) == before


def test_hf_hub_offline_in_the_environment_counts_too(hub_env, tmp_path, tokenizer, monkeypatch):
    hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, tiny_gpt(), tokenizer))
    online = tt_hub.download("me/tiny")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # set after the client's import: tinytorch reads it per call
    before = len(hub_env.requests)
    assert tt_hub.download("me/tiny") == online and len(hub_env.requests) == before


def test_offline_with_nothing_cached_names_the_shipped_checkpoints(hub_env, offline):
    with pytest.raises(CheckpointError) as err:
        GPT.from_pretrained("me/never-downloaded")
    assert str(err.value) == (
        "me/never-downloaded: not in the local Hub cache, and HF_HUB_OFFLINE is set so nothing can be "
        f"downloaded; offline, use a shipped checkpoint: {SHIPPED}")
    assert hub_env.requests == []


@pytest.fixture
def client_calls(monkeypatch):
    """Every hf_hub_download call's keyword arguments, the calls still made."""
    import huggingface_hub

    calls, real = [], huggingface_hub.hf_hub_download

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", spy)
    return calls


@pytest.fixture
def retries_left(monkeypatch):
    """The client's own retries as they are outside the tests (hub_env turns them off)."""
    for fn in (_http.http_backoff, _http.http_stream_backoff):
        monkeypatch.setitem(inspect.unwrap(fn).__kwdefaults__, "max_retries", 5)


def test_an_unreachable_hub_fails_at_once_after_one_probe(hub_env, client_calls, retries_left, monkeypatch):
    hub_env.stop()  # connections are refused from now on
    probes = []
    connect = socket.create_connection
    monkeypatch.setattr(socket, "create_connection", lambda address, *a, **k: probes.append(address) or
                        connect(address, *a, **k))
    with pytest.raises(CheckpointError) as err:
        tt_hub.download("me/tiny")
    assert str(err.value) == (
        f"me/tiny: could not reach the Hub ({hub_env.endpoint}) and it is not in the local cache; check the "
        f"connection, or set HF_HUB_OFFLINE=1 to use only what is cached, or use a shipped checkpoint: {SHIPPED}")
    port = int(hub_env.endpoint.rsplit(":", 1)[1])
    assert probes == [("127.0.0.1", port)]  # one connection attempt: the probe
    assert [c["local_files_only"] for c in client_calls] == [True]  # the client only looked in the cache

    with pytest.raises(CheckpointError):  # asked again soon after: not even a probe
        tt_hub.download("me/tiny")
    assert len(probes) == 1


def test_the_probe_goes_through_the_proxy_the_environment_names(monkeypatch):
    tried = []
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: tried.append((address, timeout))
                        or (_ for _ in ()).throw(ConnectionRefusedError()))
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert tt_hub.reachable("https://hub.invalid") is False
    assert tried == [(("127.0.0.1", 3128), tt_hub.PROBE_SECONDS)]


def test_push_to_an_unreachable_hub_fails_at_once(hub_env, tmp_path, tokenizer):
    folder = save_pretrained(tiny_gpt(), tmp_path / "ckpt", tokenizer=tokenizer)
    hub_env.stop()
    with pytest.raises(CheckpointError, match=r"^me/tiny: could not reach the Hub \(http://127\.0\.0\.1:\d+\); "
                       "check the connection and push again$"):
        push_folder(folder, "me/tiny")
    assert hub_env.requests == []


def test_an_explicit_endpoint_beats_hf_endpoint(hub_env, tmp_path, tokenizer, monkeypatch):
    hub_env.add_commit("me/tiny", checkpoint_files(tmp_path, tiny_gpt(), tokenizer))
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert (tt_hub.download("me/tiny", endpoint=hub_env.endpoint) / "config.json").exists()


# ================================================================== push
def test_push_then_from_pretrained_gives_identical_logits(hub_env, tokenizer, caplog):
    caplog.set_level(logging.DEBUG)
    model = tiny_gpt(seed=3)
    url = model.push_to_hub("me/pushed", tokenizer=tokenizer, provenance={"steps": 7})

    sha = hub_env.commits("me/pushed")[-1].sha
    assert url == f"{hub_env.endpoint}/me/pushed/commit/{sha}"
    assert sorted(hub_env.files("me/pushed")) == [".gitattributes", "README.md", "config.json", "model.safetensors"]
    loaded = GPT.from_pretrained("me/pushed")
    np.testing.assert_array_equal(logits(loaded), logits(model.eval()))
    np.testing.assert_array_equal(loaded.state_dict()["transformer.wte.weight"], model.transformer.wte.weight.data)
    assert CharTokenizer.from_pretrained("me/pushed") == tokenizer
    # The token went to the Hub as a bearer token, and nowhere else.
    assert any(r.headers.get("authorization") == f"Bearer {TOKEN}" for r in hub_env.requests)
    assert TOKEN not in caplog.text and TOKEN not in url
    assert not hub_env.repos["me/pushed"].private


def test_push_folder_publishes_the_checkpoint_only(hub_env, tmp_path, tokenizer):
    folder = save_pretrained(tiny_gpt(), tmp_path / "ckpt", tokenizer=tokenizer,
                             extra_files={"loss.svg": "<svg/>", ".DS_Store": b"\0", "optimizer.safetensors": b"x"})
    push_folder(folder, "me/secret", private=True, commit_message="first")
    assert sorted(hub_env.files("me/secret")) == [".gitattributes", "README.md", "config.json", "loss.svg",
                                                  "model.safetensors"]
    assert hub_env.repos["me/secret"].private and hub_env.commits("me/secret")[-1].message == "first"
    push_folder(folder, "me/secret")  # the repo exists already: fine, and nothing changed
    assert len(hub_env.commits("me/secret")) == 2


def test_push_refuses_a_broken_folder_before_contacting_the_hub(hub_env, tmp_path, tokenizer):
    folder = save_pretrained(tiny_gpt(), tmp_path / "ckpt", tokenizer=tokenizer)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        push_folder(folder, "me/broken")
    with pytest.raises(CheckpointError, match="no such checkpoint folder"):
        push_folder(tmp_path / "nope", "me/broken")
    assert hub_env.requests == []


def test_push_without_a_token_says_how_to_log_in(hub_env, tokenizer, monkeypatch):
    monkeypatch.delenv("HF_TOKEN")
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(CheckpointError, match=r"^no Hugging Face token: set HF_TOKEN or run `hf auth login`"):
        tiny_gpt().push_to_hub("me/x", tokenizer=tokenizer)
    assert hub_env.requests == []


def test_a_rejected_token_is_explained_without_showing_it(hub_env, tokenizer):
    hub_env.outage = 401  # FakeHub takes any token; make it answer as the Hub does to a bad one
    with pytest.raises(CheckpointError, match=r"rejected the token \(401\); check HF_TOKEN") as err:
        tiny_gpt().push_to_hub("me/x", tokenizer=tokenizer)
    assert TOKEN not in str(err.value)
