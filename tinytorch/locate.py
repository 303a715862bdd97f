"""Where a checkpoint name leads: a folder on this machine, a shipped checkpoint by name, or a Hub
repo id (downloaded into the Hub cache, config.json first)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from .checkpoint import CONFIG_NAME, MAX_PARAMETERS, WEIGHTS_NAME, CheckpointError
from . import hub
from .shipped import SHIPPED, shipped_folder

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def is_repo_id(name: str) -> bool:
    """'org/name' or 'name', as the Hub allows: no paths, no URLs, no '..'."""
    return bool(_REPO_ID.match(name)) and ".." not in name and not name.endswith((".", "-"))


def looks_like_path(name: str) -> bool:
    """Names that can only mean a folder on this machine: './x', '../x', '/x', '~/x', 'a/b/c', 'x/',
    'checkpoints/x', a bare 'x' (a repo id has an owner), or 'a/b' where the folder a exists."""
    if name.startswith((".", "/", "~", "checkpoints/")) or name.endswith("/") or "\\" in name or name.count("/") != 1:
        return True
    return Path(name).expanduser().parent.is_dir()


def checkpoint_in(folder: Path) -> Path:
    """`folder`, or the one checkpoint folder inside it: where a downloaded zip was unpacked into
    a folder of its own, the folder it was unpacked into loads too."""
    if (folder / CONFIG_NAME).is_file():
        return folder
    inner = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__"))]
    if len(inner) == 1 and (inner[0] / CONFIG_NAME).is_file():
        return inner[0]
    return folder  # loading says what is missing


def resolve(path_or_repo_id, revision: str | None = None, max_parameters: int | None = MAX_PARAMETERS,
            validate=None) -> Path:
    """The local folder of a checkpoint: a folder that exists, a shipped checkpoint by name, or the
    Hub download of a repo id ('user/model'; its config.json is checked, with `max_parameters` and
    `validate`, before the weights are fetched: see hub.download). A path that names no folder
    fails at once."""
    name = str(path_or_repo_id)
    local = Path(name).expanduser()
    if local.is_dir():
        return checkpoint_in(local)
    if local.exists():
        raise CheckpointError(f"{name}: is a file; a checkpoint is a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    shipped = shipped_folder(name)
    if shipped is not None:
        if not shipped.is_dir():
            raise CheckpointError(f"{name}: the shipped checkpoint is missing ({shipped}); make it with "
                                  f"`python -m pretrain {shipped.name} --export {shipped}`")
        return shipped
    # A bare "copilot2" is a misspelled folder far more often than a legacy un-namespaced repo, and
    # "runs/copilot" where ./runs exists is a folder not made yet, not an organisation's repo.
    if looks_like_path(name) or not is_repo_id(name):
        raise CheckpointError(
            f"{name}: no such checkpoint folder (in {os.getcwd()}); shipped checkpoints: {SHIPPED}; "
            "a Hub repo id looks like 'user/model'")
    return hub.download(name, revision=revision, max_parameters=max_parameters, validate=validate)
