"""The real huggingface_hub client against FakeHub: downloads, uploads, errors, the offline cache.

Every call passes `endpoint=` and `cache_dir=` explicitly: HF_ENDPOINT and HF_HUB_OFFLINE are read
when huggingface_hub is imported, too early for a test to set them.
"""

import inspect
import os
import socket
import time

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import httpx2  # huggingface_hub's own HTTP library
import pytest
from huggingface_hub import HfApi, constants, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.utils import _http

from hub_server import GITATTRIBUTES, FakeHub, git_blob_sha

TOKEN = "hf_fake_token"  # FakeHub takes any token; an explicit one keeps a developer's real token out
FILES = {
    "config.json": b'{"n_layer": 2}\n',
    "model.safetensors": bytes(range(256)) * 40,
    "README.md": b"---\nlicense: mit\n---\n# tiny\n",
    "sub/dir/notes.txt": b"nested\n",
    "unicodé name.txt": "é\n".encode(),  # the client percent-encodes it in every URL
}


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch):
    """Hermetic: any connection the client tries beyond 127.0.0.1 fails the test at once."""
    real = socket.create_connection

    def create_connection(address, *args, **kwargs):
        assert address[0] in ("127.0.0.1", "localhost"), f"connection attempt to {address}"
        return real(address, *args, **kwargs)

    monkeypatch.setattr(socket, "create_connection", create_connection)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_TELEMETRY", True)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # whatever the environment said at import


@pytest.fixture
def no_retries(monkeypatch):
    """Make the client's error paths fast: by default `http_backoff` retries a refused connection
    or a 5xx 5 times, sleeping 1+2+4+8+8 = 23 s. Its keyword defaults are patched, so every module
    that imported it by name sees the change (unwrapped: the stream variant is a @contextmanager)."""
    for fn in (_http.http_backoff, _http.http_stream_backoff):
        monkeypatch.setitem(inspect.unwrap(fn).__kwdefaults__, "max_retries", 0)


@pytest.fixture
def hub():
    with FakeHub() as hub:
        yield hub


def read(path):
    with open(path, "rb") as f:
        return f.read()


def write_folder(root, files):
    for path, data in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(data)
    return root


def read_folder(root):
    return {
        str(p.relative_to(root)).replace(os.sep, "/"): p.read_bytes()
        for p in root.rglob("*")
        if p.is_file() and ".cache" not in p.parts
    }


@pytest.mark.parametrize("xet", [True, False], ids=["xet-pipeline", "create-commit"])
def test_upload_folder_then_download_each_file(hub, tmp_path, monkeypatch, xet):
    # With hf_xet installed, upload_folder runs a streamed pipeline; without it, create_commit.
    # Both must land here, since preupload answers "regular" and Xet storage is never reached.
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", not xet)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    url = api.create_repo("me/tiny")
    assert url.repo_id == "me/tiny" and url.endpoint == hub.endpoint
    src = write_folder(tmp_path / "src", FILES)
    info = api.upload_folder(repo_id="me/tiny", folder_path=src, commit_message="v1")

    head = hub.commits("me/tiny")[-1]
    assert info.oid == head.sha and head.message == "v1"
    assert hub.files("me/tiny") == {".gitattributes": GITATTRIBUTES, **FILES}
    for name, data in FILES.items():
        path = hf_hub_download("me/tiny", name, endpoint=hub.endpoint, cache_dir=tmp_path / "c", token=TOKEN)
        assert read(path) == data
    # The client found a route for everything it asked, and these among them.
    assert hub.unknown_routes == []
    seen = {(r.method, r.path) for r in hub.requests}
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in hub.requests)
    assert ("POST", "/api/repos/create") in seen
    assert ("POST", "/api/models/me/tiny/preupload/main") in seen
    assert ("POST", "/api/models/me/tiny/commit/main") in seen
    assert ("HEAD", "/me/tiny/resolve/main/sub/dir/notes.txt") in seen
    assert ("GET", "/me/tiny/resolve/main/model.safetensors") in seen


def test_create_repo_exist_ok_and_conflict(hub):
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo("me/tiny")
    assert api.create_repo("me/tiny", exist_ok=True).repo_id == "me/tiny"  # the 409 is swallowed
    with pytest.raises(HfHubHTTPError) as err:
        api.create_repo("me/tiny")
    assert err.value.response.status_code == 409
    # Without a namespace the repo lands in the token owner's, as on the Hub.
    assert api.create_repo("loose").repo_id == "fake-user/loose"
    assert api.whoami()["name"] == "fake-user"
    api.create_repo("me/secret", private=True)
    assert hub.repos["me/secret"].private and not hub.repos["me/tiny"].private
    assert api.repo_exists("me/tiny") and not api.repo_exists("me/nope")
    api.delete_repo("me/tiny")
    assert not api.repo_exists("me/tiny") and "me/tiny" not in hub.repos
    api.delete_repo("me/tiny", missing_ok=True)  # the 404 RepoNotFound is what missing_ok swallows


def test_reupload_unchanged_makes_no_commit_and_deletions_work(hub, tmp_path):
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    api.create_repo("me/tiny")
    src = write_folder(tmp_path / "src", FILES)
    first = api.upload_folder(repo_id="me/tiny", folder_path=src)
    again = api.upload_folder(repo_id="me/tiny", folder_path=src)  # preupload's oids say: unchanged
    assert again.oid == first.oid and len(hub.commits("me/tiny")) == 2

    # Uploads only *.json, deletes what is under sub/ on the Hub.
    api.upload_folder(repo_id="me/tiny", folder_path=src, allow_patterns="*.json", delete_patterns="sub/**")
    assert "sub/dir/notes.txt" not in hub.files("me/tiny") and "config.json" in hub.files("me/tiny")
    api.upload_file(path_or_fileobj=b"# new card\n", path_in_repo="README.md", repo_id="me/tiny")
    assert hub.files("me/tiny")["README.md"] == b"# new card\n"
    api.delete_file("config.json", repo_id="me/tiny")
    assert "config.json" not in hub.files("me/tiny")


def test_snapshot_download_and_listing(hub, tmp_path):
    sha = hub.add_commit("me/tiny", FILES)
    folder = snapshot_download("me/tiny", endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    assert os.path.basename(folder) == sha
    assert read_folder(tmp_path / "models--me--tiny" / "snapshots" / sha) == hub.files("me/tiny")

    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    info = api.model_info("me/tiny")
    assert info.sha == sha and {s.rfilename for s in info.siblings} == set(hub.files("me/tiny"))
    top = {e.path: type(e).__name__ for e in api.list_repo_tree("me/tiny")}
    assert top == {
        ".gitattributes": "RepoFile",
        "config.json": "RepoFile",
        "model.safetensors": "RepoFile",
        "README.md": "RepoFile",
        "unicodé name.txt": "RepoFile",
        "sub": "RepoFolder",
    }
    hub.tree_page_size = 2  # forces the client to follow `Link: rel="next"` pages
    files = api.list_repo_files("me/tiny")
    assert sorted(files) == sorted(hub.files("me/tiny"))
    assert [e.path for e in api.list_repo_tree("me/tiny", path_in_repo="sub", recursive=True)] == [
        "sub/dir",
        "sub/dir/notes.txt",
    ]
    assert api.file_exists("me/tiny", "sub/dir/notes.txt") and not api.file_exists("me/tiny", "nope.txt")
    blob = next(e for e in api.list_repo_tree("me/tiny") if e.path == "config.json")
    assert blob.blob_id == git_blob_sha(FILES["config.json"]) and blob.size == len(FILES["config.json"])


def test_revision_pinning(hub, tmp_path):
    old = hub.add_commit("me/tiny", {"config.json": b"old"})
    new = hub.add_commit("me/tiny", {"config.json": b"new", "extra.txt": b"x"})
    assert old != new
    kw = dict(endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    assert read(hf_hub_download("me/tiny", "config.json", revision=old, **kw)) == b"old"
    assert read(hf_hub_download("me/tiny", "config.json", **kw)) == b"new"
    old_folder = snapshot_download("me/tiny", revision=old, **kw)
    assert sorted(os.listdir(old_folder)) == [".gitattributes", "config.json"]
    # A branch other than main, named with a slash (URL-encoded by the client).
    hub.add_commit("me/tiny", {"config.json": b"dev"}, revision="dev/x")
    assert read(hf_hub_download("me/tiny", "config.json", revision="dev/x", **kw)) == b"dev"


def test_missing_repo_revision_and_file_raise_the_clients_errors(hub, tmp_path):
    hub.add_commit("me/tiny", FILES)
    kw = dict(endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    start = time.monotonic()
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("me/nope", "config.json", **kw)
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("me/nope", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("me/tiny", "config.json", revision="no-such-branch", **kw)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("me/tiny", "config.json", revision="0" * 40, **kw)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download("me/tiny", revision="no-such-branch", **kw)
    with pytest.raises(EntryNotFoundError):
        hf_hub_download("me/tiny", "nope.bin", **kw)
    api = HfApi(endpoint=hub.endpoint, token=TOKEN)
    with pytest.raises(RepositoryNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="me/nope")
    with pytest.raises(RevisionNotFoundError):
        api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="me/tiny", revision="no-such-branch")
    assert time.monotonic() - start < 3  # 404s are never retried
    assert hub.unknown_routes == []


def test_cache_serves_after_the_hub_stops(tmp_path, no_retries):
    with FakeHub() as hub:
        kw = dict(endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)  # still its address after stop()
        sha = hub.add_commit("me/tiny", FILES)
        online = hf_hub_download("me/tiny", "config.json", **kw)
        snapshot_download("me/tiny", **kw)

    start = time.monotonic()
    assert hf_hub_download("me/tiny", "config.json", local_files_only=True, **kw) == online
    # Not offline, but connections are refused: the HEAD fails without retry and refs/main serves.
    assert hf_hub_download("me/tiny", "config.json", **kw) == online
    assert os.path.basename(snapshot_download("me/tiny", **kw)) == sha
    assert hf_hub_download("me/tiny", "config.json", revision=sha, **kw) == online
    with pytest.raises(LocalEntryNotFoundError):  # never cached: fast only thanks to `no_retries`
        hf_hub_download("me/tiny", "never.txt", **kw)
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("me/tiny", "never.txt", local_files_only=True, **kw)
    assert time.monotonic() - start < 3


def test_hf_hub_offline_reaches_no_server(hub, tmp_path, monkeypatch):
    kw = dict(endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    hub.add_commit("me/tiny", FILES)
    online = snapshot_download("me/tiny", **kw)
    # HF_HUB_OFFLINE=1 in the environment only counts at import; the constant is read per request.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    before = len(hub.requests)
    assert snapshot_download("me/tiny", **kw) == online
    assert read(hf_hub_download("me/tiny", "config.json", **kw)) == FILES["config.json"]
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("me/tiny", "never.txt", **kw)
    assert len(hub.requests) == before


def test_outage_falls_back_to_cache(hub, tmp_path, no_retries):
    kw = dict(endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    hub.add_commit("me/tiny", FILES)
    online = hf_hub_download("me/tiny", "config.json", **kw)
    hub.outage = 503
    assert hf_hub_download("me/tiny", "config.json", **kw) == online
    with pytest.raises(LocalEntryNotFoundError):
        hf_hub_download("me/tiny", "README.md", **kw)
    hub.outage = None
    assert read(hf_hub_download("me/tiny", "README.md", **kw)) == FILES["README.md"]


def test_range_requests(hub):
    hub.add_commit("me/tiny", {"a.bin": b"0123456789"})
    url = f"{hub.endpoint}/me/tiny/resolve/main/a.bin"
    r = httpx2.get(url, headers={"Range": "bytes=3-"})
    assert (r.status_code, r.content, r.headers["Content-Range"]) == (206, b"3456789", "bytes 3-9/10")
    assert httpx2.get(url, headers={"Range": "bytes=2-4"}).content == b"234"
    assert httpx2.get(url, headers={"Range": "bytes=-2"}).content == b"89"
    assert httpx2.get(url, headers={"Range": "bytes=5-99"}).content == b"56789"
    assert httpx2.get(url, headers={"Range": "bytes=10-"}).status_code == 416
    head = httpx2.head(url)
    assert head.headers["ETag"] == f'"{git_blob_sha(b"0123456789")}"'
    assert head.headers["Content-Length"] == "10"
    assert head.headers["X-Repo-Commit"] == hub.commits("me/tiny")[-1].sha


def test_client_resumes_a_broken_download_with_range(hub, tmp_path, monkeypatch):
    # The client counts only whole chunks (10 MB by default) as received: small ones make it resume.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 256)
    data = bytes(range(256)) * 4
    hub.add_commit("me/tiny", {"w.bin": data})
    hub.break_downloads = 1  # the first GET stops after 512 of 1024 bytes; the client waits 1 s, resumes
    path = hf_hub_download("me/tiny", "w.bin", endpoint=hub.endpoint, cache_dir=tmp_path, token=TOKEN)
    assert read(path) == data
    gets = [r for r in hub.requests if (r.method, r.path) == ("GET", "/me/tiny/resolve/main/w.bin")]
    assert [r.headers.get("range") for r in gets] == [None, "bytes=512-"]
