"""A stand-in for the Hugging Face Hub on 127.0.0.1, for hermetic tests.

`FakeHub` speaks just enough of the Hub's HTTP API for the real `huggingface_hub` 2.x client
(no mocks on the client side) to download from and upload to it, with no network:

    with FakeHub() as hub:
        sha = hub.add_commit("user/tiny", {"config.json": b"{}"})
        path = hf_hub_download("user/tiny", "config.json", endpoint=hub.endpoint, cache_dir=tmp)

Client calls it serves (model repos only; pass `endpoint=hub.endpoint`, never HF_ENDPOINT, which
the client reads at import time):

- downloads: `hf_hub_download`, `snapshot_download`, `HfApi.model_info` / `repo_info`,
  `list_repo_tree` / `list_repo_files` (with paging), `file_exists`, `repo_exists`;
  at a branch or a full commit sha, with Range requests.
- uploads: `create_repo(exist_ok=...)`, `upload_folder`, `upload_file`, `create_commit`
  (additions and deletions), `delete_repo`, `whoami`. Every file is answered "regular" by
  preupload (base64 in the commit body), so neither LFS nor Xet is ever used.
- errors as the Hub sends them: 404 with `X-Error-Code` RepoNotFound / RevisionNotFound /
  EntryNotFound, so the client raises RepositoryNotFoundError / RevisionNotFoundError /
  EntryNotFoundError.

What tests can inspect or steer: `requests` (method, path and headers of each one received),
`unknown_routes`, `files()` / `commits()`; `outage` (e.g. 503: answer everything with that status),
`break_downloads` (the next N file downloads hang up halfway, so the client resumes with Range).

Any bearer token is accepted (and none is required). Stdlib only: the client's own cache and
retry logic are what tests exercise, so the server stays dumb and readable.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import NamedTuple
from urllib.parse import parse_qs, quote, unquote, urlsplit

log = logging.getLogger(__name__)

# The Hub puts this in every new repo's first commit; mirroring it keeps snapshots realistic
# (code that assumes "every file in the snapshot is mine" meets it here first).
GITATTRIBUTES = (
    b"*.bin filter=lfs diff=lfs merge=lfs -text\n"
    b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"
)

# A repo id is "name" or "namespace/name": at most one slash, so the routes below are unambiguous.
_REPO = r"(?P<repo>[^/]+(?:/[^/]+)?)"
_RESOLVE = re.compile(rf"^/{_REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_API_REPO = re.compile(rf"^/api/models/{_REPO}(?:/(?P<action>revision|tree|preupload|commit)/(?P<rest>.*))?$")


def git_blob_sha(data: bytes) -> str:
    """Git's blob id: the Hub's ETag for a regular file, and the oid the client compares to skip
    unchanged files on upload (`huggingface_hub.utils.sha.git_hash`)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _byte_range(header: str, size: int) -> tuple[int, int] | None:
    """`bytes=a-b`, `bytes=a-` or `bytes=-n` -> (first, last) byte, inclusive; None if unsatisfiable."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if not m or not (m[1] or m[2]):
        return None
    if not m[1]:  # the last n bytes
        start, end = max(size - int(m[2]), 0), size - 1
    else:
        start, end = int(m[1]), min(int(m[2]) if m[2] else size - 1, size - 1)
    return (start, end) if start <= end else None


@dataclass
class Commit:
    sha: str  # 40 hex
    files: dict[str, bytes]  # the whole tree at this commit, path -> content
    message: str


@dataclass
class Repo:
    private: bool = False
    commits: list[Commit] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)  # "main" -> sha


class Request(NamedTuple):
    method: str
    path: str  # URL path as sent (still percent-encoded), without the query string
    headers: dict[str, str]  # names lower-cased: "authorization", "range", ...


class HubError(Exception):
    """An error answer: status, the Hub's X-Error-Code (the client maps it to an exception), message."""

    def __init__(self, status: int, code: str | None, message: str, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.commit = status, code, message, commit


class FakeHub:
    def __init__(self, username: str = "fake-user"):
        self.username = username  # the namespace of repos created without one, and whoami's name
        self.repos: dict[str, Repo] = {}
        self.requests: list[Request] = []
        self.unknown_routes: list[Request] = []
        self.outage: int | None = None  # an HTTP status (e.g. 503) answered to every request
        self.tree_page_size = 1000  # the Hub pages tree listings by 1000; lower it to test paging
        self.break_downloads = 0  # the next N file GETs send half their bytes, then hang up (flaky network)
        self._lock = threading.Lock()
        self.endpoint: str | None = None  # "http://127.0.0.1:PORT" once started; kept after stop()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> FakeHub:
        hub = self

        class Handler(_Handler):
            fake_hub = hub

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)  # port 0: the OS picks a free one
        self._server.daemon_threads = True
        self.endpoint = "http://127.0.0.1:%d" % self._server.server_address[1]
        # A short poll interval: stop() waits up to one interval for the serving loop to notice.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-hub", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: afterwards connections to `endpoint` are refused, as with a dead Hub."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ content, for tests

    def create_repo(self, repo_id: str, private: bool = False) -> str:
        """Create `repo_id` with the Hub's initial commit (a .gitattributes); return that commit's sha."""
        with self._lock:
            if repo_id in self.repos:
                raise HubError(409, None, f"You already created this model repo: {repo_id}")
            self.repos[repo_id] = Repo(private=private)
            return self._commit(repo_id, "main", {".gitattributes": GITATTRIBUTES}, "initial commit")

    def add_commit(
        self,
        repo_id: str,
        files: dict[str, bytes | None],
        revision: str = "main",
        message: str = "test commit",
    ) -> str:
        """Commit `files` on top of branch `revision` (a None value deletes that path); return the new sha.

        Creates the repo (and the branch, from main) if needed, so tests can seed content in one line.
        """
        if repo_id not in self.repos:
            self.create_repo(repo_id)
        with self._lock:
            repo = self.repos[repo_id]
            repo.branches.setdefault(revision, repo.branches["main"])
            return self._commit(repo_id, revision, files, message)

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """The whole tree of `repo_id` at a branch or sha."""
        with self._lock:
            return dict(self._resolve(repo_id, revision).files)

    def commits(self, repo_id: str) -> list[Commit]:
        """Commits of `repo_id`, oldest first."""
        with self._lock:
            return list(self.repos[repo_id].commits)

    # ------------------------------------------------------------------ internals (hold the lock)

    def _commit(self, repo_id: str, branch: str, changes: dict[str, bytes | None], message: str) -> str:
        repo = self.repos[repo_id]
        parent = self._resolve(repo_id, branch) if branch in repo.branches else None
        files = dict(parent.files) if parent else {}
        for path, data in changes.items():
            if data is None:
                files.pop(path, None)
            else:
                files[path] = bytes(data)
        # Like git, the id depends on the parent, so every commit on a branch gets a new sha.
        parent_sha = parent.sha if parent else ""
        digest = hashlib.sha1(f"{repo_id}\0{parent_sha}\0{message}\0{time.time_ns()}".encode())
        for path in sorted(files):
            digest.update(f"{path}\0{git_blob_sha(files[path])}\0".encode())
        commit = Commit(sha=digest.hexdigest(), files=files, message=message)
        repo.commits.append(commit)
        repo.branches[branch] = commit.sha
        return commit.sha

    def _repo(self, repo_id: str) -> Repo:
        if repo_id not in self.repos:
            raise HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return self.repos[repo_id]

    def _resolve(self, repo_id: str, revision: str) -> Commit:
        """A branch name or a full commit sha -> the commit."""
        repo = self._repo(repo_id)
        sha = repo.branches.get(revision, revision)
        for commit in repo.commits:
            if commit.sha == sha:
                return commit
        raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")


class _Handler(BaseHTTPRequestHandler):
    """One request. HTTP/1.0 (the default): a connection per request, so after `stop()` no kept-alive
    connection can still reach a handler thread, and the client sees a refused connection."""

    fake_hub: FakeHub

    # -------------------------------------------------------------- plumbing

    def do_HEAD(self):
        self._dispatch()

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def log_message(self, format, *args):  # the default writes every request to stderr
        log.debug("%s " + format, self.address_string(), *args)

    def _dispatch(self):
        hub = self.fake_hub
        url = urlsplit(self.path)
        self.query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        length = int(self.headers.get("Content-Length") or 0)
        self.body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        hub.requests.append(Request(self.command, url.path, headers))
        if hub.outage is not None:
            return self._send_json({"error": "FakeHub: simulated outage"}, status=hub.outage)
        try:
            self._route(url.path)
        except HubError as e:
            self._send_error(e)
        except Exception as e:  # a bug in FakeHub itself
            log.exception("FakeHub failed on %s %s", self.command, self.path)
            # 400, not 500: the client retries 5xx with backoff (~23 s), which would hide the bug
            # behind a slow test instead of a fast, clear failure.
            self._send_error(HubError(400, None, f"FakeHub bug: {e!r}"))

    def _route(self, path: str):
        method = self.command
        if method in ("GET", "HEAD") and (m := _RESOLVE.match(path)):
            return self._resolve_file(unquote(m["repo"]), unquote(m["rev"]), unquote(m["path"]))
        if method == "GET" and path == "/api/whoami-v2":
            name = self.fake_hub.username
            return self._send_json({"type": "user", "name": name, "fullname": name, "orgs": []})
        if method == "POST" and path == "/api/repos/create":
            return self._create_repo(json.loads(self.body))
        if method == "DELETE" and path == "/api/repos/delete":
            return self._delete_repo(json.loads(self.body))
        if method == "POST" and path == "/api/validate-yaml":  # upload_file/create_commit of a README.md
            return self._send_json({"errors": [], "warnings": []})
        if m := _API_REPO.match(path):
            repo_id, action, rest = unquote(m["repo"]), m["action"], m["rest"]
            if method == "GET" and action is None:
                return self._model_info(repo_id, "main")
            if method == "GET" and action == "revision":
                return self._model_info(repo_id, unquote(rest))
            if method == "GET" and action == "tree":
                rev, _, sub = rest.partition("/")  # both are quoted with safe="" by the client
                return self._tree(repo_id, unquote(rev), unquote(sub).strip("/"))
            if method == "POST" and action == "preupload":
                return self._preupload(repo_id, unquote(rest), json.loads(self.body))
            if method == "POST" and action == "commit":
                return self._commit(repo_id, unquote(rest))
        # Unknown: 404 without X-Error-Code, and remembered, so a new client call shows up in tests.
        log.warning("FakeHub: no route for %s %s", method, self.path)
        self.fake_hub.unknown_routes.append(self.fake_hub.requests[-1])
        raise HubError(404, None, f"FakeHub: no route for {method} {path}")

    def _send(self, status: int, body: bytes, headers: dict[str, str]):
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, data, status: int = 200, headers: dict[str, str] | None = None):
        body = json.dumps(data).encode()
        self._send(status, body, {"Content-Type": "application/json", **(headers or {})})

    def _send_error(self, e: HubError):
        # The message goes in a header too: a HEAD answer has no body to carry it. Headers are
        # latin-1 on the wire, and a file name may not be.
        headers = {"X-Error-Message": e.message.encode("ascii", "backslashreplace").decode()}
        if e.code:
            headers["X-Error-Code"] = e.code
        if e.commit:  # the Hub tells which commit lacks the file; the client caches that absence
            headers["X-Repo-Commit"] = e.commit
        self._send_json({"error": e.message}, status=e.status, headers=headers)

    # -------------------------------------------------------------- downloads

    def _resolve_file(self, repo_id: str, revision: str, path: str):
        hub = self.fake_hub
        with hub._lock:
            commit = hub._resolve(repo_id, revision)
        if path not in commit.files:
            raise HubError(404, "EntryNotFound", f"{path} does not exist at {revision}", commit=commit.sha)
        data = commit.files[path]
        headers = {
            "X-Repo-Commit": commit.sha,
            "ETag": f'"{git_blob_sha(data)}"',
            "Accept-Ranges": "bytes",
            "Content-Type": "application/octet-stream",
        }
        status, body = 200, data
        if (range_header := self.headers.get("Range")) and self.command == "GET":  # a resumed download
            if (span := _byte_range(range_header, len(data))) is None:
                return self._send(416, b"", {**headers, "Content-Range": f"bytes */{len(data)}"})
            start, end = span
            status, body = 206, data[start : end + 1]
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        with hub._lock:
            broken = self.command == "GET" and hub.break_downloads > 0 and len(body) > 1
            hub.break_downloads -= broken
        if broken:  # announce every byte, send half: the client sees the body end early and resumes
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            return
        self._send(status, body, headers)

    def _model_info(self, repo_id: str, revision: str):
        hub = self.fake_hub
        with hub._lock:
            repo = hub._repo(repo_id)
            commit = hub._resolve(repo_id, revision)
        author, _, _ = repo_id.rpartition("/")
        self._send_json(
            {
                "_id": hashlib.sha1(repo_id.encode()).hexdigest()[:24],
                "id": repo_id,
                "modelId": repo_id,
                "author": author or None,
                "sha": commit.sha,
                "private": repo.private,
                "disabled": False,
                "gated": False,
                "downloads": 0,
                "likes": 0,
                "tags": [],
                "siblings": [
                    {"rfilename": path, "size": len(data), "blobId": git_blob_sha(data)}
                    for path, data in sorted(commit.files.items())
                ],
            }
        )

    def _tree(self, repo_id: str, revision: str, sub: str):
        hub = self.fake_hub
        with hub._lock:
            commit = hub._resolve(repo_id, revision)
        recursive = self.query.get("recursive", "false").lower() in ("1", "true")
        prefix = f"{sub}/" if sub else ""
        entries: dict[str, dict] = {}  # path -> entry; folders are implied by the files under them
        for path, data in commit.files.items():
            if not path.startswith(prefix):
                continue
            parts = path[len(prefix) :].split("/")
            depth = len(parts) if recursive else 1
            for i in range(1, min(depth, len(parts) - 1) + 1):  # the folders on the way
                folder = prefix + "/".join(parts[:i])
                oid = hashlib.sha1(f"tree {commit.sha} {folder}".encode()).hexdigest()
                entries[folder] = {"type": "directory", "oid": oid, "size": 0, "path": folder}
            if recursive or len(parts) == 1:
                entries[path] = {"type": "file", "oid": git_blob_sha(data), "size": len(data), "path": path}
        if sub and not entries:
            raise HubError(404, "EntryNotFound", f"{sub} does not exist at {revision}", commit=commit.sha)
        listing = [entries[p] for p in sorted(entries)]

        # Cursor paging as the Hub does it: a `Link: <next url>; rel="next"` header, followed by the client.
        start = int(self.query.get("cursor", 0))
        page = listing[start : start + hub.tree_page_size]
        headers = {}
        if start + hub.tree_page_size < len(listing):
            params = {**self.query, "cursor": str(start + hub.tree_page_size)}
            query = "&".join(f"{k}={quote(v)}" for k, v in params.items())
            headers["Link"] = f'<{hub.endpoint}{urlsplit(self.path).path}?{query}>; rel="next"'
        self._send_json(page, headers=headers)

    # -------------------------------------------------------------- uploads

    def _create_repo(self, payload: dict):
        if payload.get("type", "model") != "model":
            raise HubError(400, None, "FakeHub serves model repos only")
        repo_id = f"{payload.get('organization') or self.fake_hub.username}/{payload['name']}"
        private = payload.get("private") or payload.get("visibility") == "private"
        url = f"{self.fake_hub.endpoint}/{repo_id}"
        try:
            self.fake_hub.create_repo(repo_id, private=bool(private))
        except HubError as e:
            # create_repo(exist_ok=True) relies on exactly this: a 409, which it then swallows.
            return self._send_json({"error": e.message, "url": url}, status=409)
        self._send_json({"url": url, "name": repo_id, "id": repo_id})

    def _delete_repo(self, payload: dict):
        repo_id = f"{payload.get('organization') or self.fake_hub.username}/{payload['name']}"
        with self.fake_hub._lock:
            self.fake_hub._repo(repo_id)
            del self.fake_hub.repos[repo_id]
        self._send_json({})

    def _preupload(self, repo_id: str, revision: str, payload: dict):
        hub = self.fake_hub
        with hub._lock:
            hub._repo(repo_id)
            # A new branch has no files yet; otherwise give the current oid, so the client can skip
            # files that did not change (and make no empty commit), as it does against the Hub.
            current = hub._resolve(repo_id, revision).files if revision in hub.repos[repo_id].branches else {}
        files = []
        for f in payload["files"]:
            data = current.get(f["path"])
            files.append(
                {
                    "path": f["path"],
                    "uploadMode": "regular",  # content travels base64 in the commit: no LFS, no Xet
                    "shouldIgnore": False,
                    "oid": git_blob_sha(data) if data is not None else None,
                }
            )
        self._send_json({"files": files, "commitOid": None})

    def _commit(self, repo_id: str, revision: str):
        hub = self.fake_hub
        if self.query.get("create_pr"):
            raise HubError(400, None, "FakeHub does not do pull requests")
        lines = [json.loads(line) for line in self.body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        with hub._lock:
            repo = hub._repo(repo_id)
            if revision not in repo.branches:
                raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision} is not a branch")
            head = hub._resolve(repo_id, revision)
            if header.get("parentCommit") not in (None, head.sha):
                raise HubError(412, None, "A commit has happened since. Please refresh and try again.")
            changes: dict[str, bytes | None] = {}
            for line in lines:
                key, value = line["key"], line["value"]
                if key == "file":
                    changes[value["path"]] = base64.b64decode(value["content"])
                elif key == "deletedFile":
                    if value["path"] not in head.files:
                        message = f"A file with this name doesn't exist: {value['path']}"
                        raise HubError(404, "EntryNotFound", message)
                    changes[value["path"]] = None
                elif key == "deletedFolder":
                    folder = value["path"].rstrip("/") + "/"
                    changes.update({p: None for p in head.files if p.startswith(folder)})
                elif key != "header":  # lfsFile / copies: never asked for, since preupload says "regular"
                    raise HubError(400, None, f"FakeHub does not support commit operation {key!r}")
            message = "\n\n".join(filter(None, [header["summary"], header.get("description")]))
            sha = hub._commit(repo_id, revision, changes, message)
        self._send_json(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": f"{hub.endpoint}/{repo_id}/commit/{sha}",
                "pullRequestUrl": None,
            }
        )
