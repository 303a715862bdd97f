"""The Hugging Face Hub: fetch a checkpoint folder by repo id, publish a checkpoint folder.

huggingface_hub is imported inside the functions: loading a local checkpoint never needs it.
Every client error becomes a CheckpointError of one sentence that says what went wrong and
what to do. Tokens are handed to the client and never logged or put in a message.

Where the Hub is: `endpoint=` if given, else HF_ENDPOINT read at call time (the client reads it
once, at import), else the client's default (https://huggingface.co). Offline: HF_HUB_OFFLINE.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from urllib.parse import urlsplit

from .checkpoint import (CARD_NAME, CONFIG_NAME, MAX_CONFIG_BYTES, MAX_PARAMETERS, WEIGHTS_NAME, CheckpointError,
                         check_replaceable, config_from_dict, max_weights_bytes, read_config)
from .files import replace_folder
from .shipped import SHIPPED

# Training state never belongs on the Hub; hidden files are editor or tool leftovers.
PUSH_IGNORE = [".*", "**/.*", "optimizer.safetensors", "trainer_state.json", "__pycache__/**"]


def _client():
    try:
        import huggingface_hub
    except ImportError:
        raise CheckpointError(
            "huggingface_hub is not installed (pip install huggingface_hub); "
            f"local checkpoint folders work without it: {SHIPPED}") from None
    return huggingface_hub


def hub_endpoint(endpoint: str | None = None) -> str:
    from huggingface_hub import constants

    return (endpoint or os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def is_offline() -> bool:
    """HF_HUB_OFFLINE as the client read it at import, or as the environment says now."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE) or os.environ.get("HF_HUB_OFFLINE", "").upper() in {"1", "ON", "YES", "TRUE"}


PROBE_SECONDS = 3.0  # one TCP connect to the Hub: a reachable Hub answers in well under this
_UNREACHABLE: dict[str, float] = {}  # endpoint -> when a probe last failed
FORGET_SECONDS = 60.0  # a failed probe is trusted this long: a page that asks again does not wait again


def reachable(endpoint: str) -> bool:
    """Whether one TCP connection to the Hub (or to the proxy the environment names for it) opens
    within PROBE_SECONDS. The client itself would retry an unreachable Hub for about 25 seconds."""
    import socket
    import urllib.request  # here, not at the top: loading a local checkpoint never needs them (~15 ms)

    failed = _UNREACHABLE.get(endpoint)
    if failed is not None and time.monotonic() - failed < FORGET_SECONDS:
        return False
    url = urlsplit(endpoint)
    host, port = url.hostname, url.port or (443 if url.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(url.scheme)
    if proxy and not urllib.request.proxy_bypass(host or ""):
        proxy_url = urlsplit(proxy if "://" in proxy else "http://" + proxy)
        host, port = proxy_url.hostname, proxy_url.port or 8080
    try:
        socket.create_connection((host, port), timeout=PROBE_SECONDS).close()
    except (OSError, ValueError):  # refused, no route, no DNS, timed out; ValueError: a malformed address
        _UNREACHABLE[endpoint] = time.monotonic()
        return False
    _UNREACHABLE.pop(endpoint, None)
    return True


def unreachable_error(where: str, endpoint: str) -> CheckpointError:
    return CheckpointError(f"{where}: could not reach the Hub ({endpoint}) and it is not in the local cache; "
                           "check the connection, or set HF_HUB_OFFLINE=1 to use only what is cached, or use a "
                           f"shipped checkpoint: {SHIPPED}")


def download(repo_id: str, revision: str | None = None, to=None, *, endpoint: str | None = None,
             cache_dir=None, token: str | None = None, max_parameters: int | None = MAX_PARAMETERS,
             validate=None) -> Path:
    """Fetch config.json, model.safetensors and (if the repo has one) README.md of `repo_id`.

    config.json comes first and is checked (its size, its values, the parameter count against
    `max_parameters`; None: no cap; then `validate(values, label)`, which raises CheckpointError
    for what else its caller requires, such as CharTokenizer.check_config for the tokenizer entry)
    before the weights are fetched, and so is the weights file's size: a repo that is not a
    tinytorch checkpoint, or is too big, costs one small download.
    Files land in the standard Hub cache (or `cache_dir`) and are served from it offline. All of
    them come from one commit: the one config.json was found at. Returns the snapshot folder, or
    `to` when given (a copy of the snapshot, replaced atomically). Errors name the repo's files
    (`user/model/config.json`), not the cache.
    """
    if to is not None:
        check_replaceable(to)  # before the download, not after it
    hf = _client()
    endpoint = hub_endpoint(endpoint)
    # No network: the cache serves at once, or the error says so at once (instead of half a minute of retries).
    offline = is_offline() or not reachable(endpoint)
    options = dict(endpoint=endpoint, cache_dir=cache_dir, token=token, local_files_only=offline)

    def fetch(filename: str, rev: str | None, limit: int) -> Path:
        """The file, refused before a byte of it arrives when the Hub says it is over `limit` bytes."""
        cache_only = offline
        try:
            if not offline:
                url = hf.hf_hub_url(repo_id, filename, revision=rev, endpoint=endpoint)
                try:
                    size = hf.get_hf_file_metadata(url, token=token).size  # one HEAD request
                except hf.errors.HfHubHTTPError:
                    raise  # no such repo, revision or file: said below
                except Exception:  # noqa: BLE001 - the Hub is unreachable: the cache may still serve
                    size, cache_only = None, True
                if size is not None and size > limit:
                    raise CheckpointError(f"{repo_id}/{filename}: {size:,} bytes, more than the {limit:,} a "
                                          "tinytorch checkpoint of this size can need; not downloaded")
            return Path(hf.hf_hub_download(repo_id, filename, revision=rev, **{**options,
                                                                                "local_files_only": cache_only}))
        except CheckpointError:
            raise
        except Exception as err:
            raise explain(err, repo_id, revision, endpoint, filename) from None

    config = fetch(CONFIG_NAME, revision, MAX_CONFIG_BYTES)
    commit = config.parent.name  # the cache keeps files under snapshots/<commit sha>/
    label = f"{repo_id}/{CONFIG_NAME}"
    values = read_config(config.parent, label)
    model_config = config_from_dict(values, label, max_parameters)
    if validate is not None:
        validate(values, label)
    fetch(WEIGHTS_NAME, commit, max_weights_bytes(model_config))
    try:
        fetch(CARD_NAME, commit, MAX_CONFIG_BYTES)
    except CheckpointError:
        pass  # a model card is welcome, not required
    snapshot = config.parent
    if to is None:
        return snapshot
    check_replaceable(to)

    def copy(folder: Path):
        for name in (CONFIG_NAME, WEIGHTS_NAME, CARD_NAME):
            if (snapshot / name).exists():
                shutil.copyfile(snapshot / name, folder / name)  # follows the cache's symlinks

    replace_folder(to, copy)
    return Path(to)


def upload_folder(folder, repo_id: str, private: bool = False, token: str | None = None,
                  commit_message: str = "Upload tinytorch checkpoint", *, endpoint: str | None = None) -> str:
    """Publish `folder` as model repo `repo_id` (created if needed); returns the commit URL. The
    caller has checked that the folder loads (tinytorch.pretrained.push_folder, GPT.push_to_hub).
    token: by default HF_TOKEN, else the one `hf auth login` saved.
    """
    hf = _client()
    token = token or hf.get_token()
    if not token:
        raise CheckpointError("no Hugging Face token: set HF_TOKEN or run `hf auth login` (with write access), "
                              "then push again")
    endpoint = hub_endpoint(endpoint)
    if is_offline():
        raise CheckpointError(f"HF_HUB_OFFLINE is set, so nothing can be published; unset it to push {repo_id}")
    if not reachable(endpoint):
        raise CheckpointError(f"{repo_id}: could not reach the Hub ({endpoint}); check the connection and push again")
    api = hf.HfApi(endpoint=endpoint, token=token)
    try:
        repo = api.create_repo(repo_id, private=private, exist_ok=True)
        commit = api.upload_folder(repo_id=repo.repo_id, folder_path=folder, commit_message=commit_message,
                                   ignore_patterns=PUSH_IGNORE)
    except Exception as err:
        raise explain(err, repo_id, None, endpoint) from None
    return commit.commit_url


def explain(err: Exception, repo_id: str, revision: str | None, endpoint: str, filename: str | None = None) -> Exception:
    """The client's exception -> a CheckpointError of one sentence (other exceptions pass through)."""
    from huggingface_hub import errors

    where = f"{repo_id}@{revision}" if revision else repo_id
    if isinstance(err, errors.HFValidationError):
        return CheckpointError(f"{repo_id!r}: not a valid Hub repo id ({_first_line(err)})")
    if isinstance(err, errors.GatedRepoError):
        return CheckpointError(f"{repo_id}: a gated repo; accept its terms on the Hub and log in (`hf auth login`)")
    if isinstance(err, errors.RepositoryNotFoundError):
        return CheckpointError(f"{repo_id}: no such model repo on the Hub ({endpoint}), or it is private and "
                               "needs a token (HF_TOKEN or `hf auth login`)")
    if isinstance(err, errors.RevisionNotFoundError):
        return CheckpointError(f"{repo_id}: has no revision {revision!r} (a branch, tag or commit sha)")
    if isinstance(err, errors.RemoteEntryNotFoundError):
        return CheckpointError(f"{where}: has no {filename}; a tinytorch checkpoint holds {CONFIG_NAME} "
                               f"and {WEIGHTS_NAME}")
    if isinstance(err, errors.LocalEntryNotFoundError):
        if is_offline():
            return CheckpointError(f"{where}: not in the local Hub cache, and HF_HUB_OFFLINE is set so nothing "
                                   f"can be downloaded; offline, use a shipped checkpoint: {SHIPPED}")
        return unreachable_error(where, endpoint)
    if isinstance(err, errors.HfHubHTTPError) and err.response is not None:
        status = err.response.status_code
        if status == 401:
            return CheckpointError(f"the Hub ({endpoint}) rejected the token (401); check HF_TOKEN or run "
                                   "`hf auth login`")
        if status == 403:
            return CheckpointError(f"{repo_id}: the token may not write there (403); it needs write access "
                                   "to that namespace")
        return CheckpointError(f"{where}: the Hub ({endpoint}) answered {status}: {_first_line(err)}")
    if type(err).__module__.split(".")[0].startswith("httpx"):  # the client's transport, httpx or a fork
        return CheckpointError(f"{where}: could not reach the Hub ({endpoint}): {_first_line(err)}")
    return err


def _first_line(err: Exception) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0] if lines else type(err).__name__
