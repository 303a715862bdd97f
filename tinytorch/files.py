"""Replacing a folder whole, safely: write a temporary sibling, flush it to disk, rename it into
place. Checkpoints, Hub downloads and training runs all save this way, so an interrupted save
never leaves a half-written folder where a good one stood.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path


def fsync_tree(folder: Path) -> None:
    """Data on disk before a rename makes it visible (files only: a folder cannot be opened "rb")."""
    for root, _, files in os.walk(folder):
        for name in files:
            with open(os.path.join(root, name), "rb") as handle:
                os.fsync(handle.fileno())


def make_readable(folder: Path) -> None:
    """mkdtemp makes a private (0700) folder; a saved checkpoint is an ordinary one, readable by
    others as the umask allows, like any folder the user makes."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [folder, *folder.rglob("*")]:
        os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~umask)


def replace_folder(directory, write) -> None:
    """Call write(temporary_folder), then move the folder into place as `directory`.

    Until the rename, `directory` keeps its old content; if `write` fails, it is untouched and
    the temporary folder is removed.
    """
    directory = Path(os.path.abspath(directory))  # "." or "a/.." would have no usable name
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        write(tmp)
        fsync_tree(tmp)
        make_readable(tmp)
        if directory.exists():
            # Two renames: a crash between them leaves the old folder whole under .NAME.old-*.
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "previous")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
