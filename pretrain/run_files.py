"""What in a run folder is the kit's, and how the kit writes there.

A run folder may sit among a user's files, and a user may put files inside it: the kit recognises
a run by a marker only it writes (MARKER, holding the run's identity), and touches only names it
writes itself, matched exactly (`step-000500`, never `step-photos`). It writes through no name that
someone else could have planted: a symbolic link where the kit expects its own file is refused,
never followed, and temporary files are created new (O_EXCL), never opened if they exist.

Run folders begun before the marker existed are recognised by the kit's own formats (a `latest`
pointer naming a step folder with its trainer_state.json) and marked when they resume.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import tempfile
import time
import uuid
from pathlib import Path

MARKER = ".tinytorch-run"  # {"run": a random id, "model": ..., "created": ...}: this folder holds a run
LATEST = "latest"
METRICS = "metrics.jsonl"
SETTINGS = "settings.json"
LOCK = ".lock"
STEP = re.compile(r"^step-\d{6}$")  # step_name(step); step-000500, never step-photos
# Leftovers of the kit's own writes: a step folder's temporary and replaced copies
# (tinytorch.files.replace_folder), and the temporary file of a pointer, metrics or settings.
LEFTOVER = re.compile(r"^\.step-\d{6}\.(tmp|old)-[A-Za-z0-9_]+$|^\.(latest|metrics\.jsonl|settings\.json|"
                      r"tinytorch-run)\.tmp$|^\.write-test-[A-Za-z0-9_]+$")
FILES = (MARKER, LATEST, METRICS, SETTINGS)  # the kit's files, beside its step folders and LOCK


def step_name(step: int) -> str:
    return f"step-{step:06d}"


def step_number(folder: Path) -> int:
    """500 for step-000500."""
    return int(folder.name[len("step-"):])


def step_folders(out: Path) -> list[Path]:
    """The run's step folders, oldest first: exact names, real folders (a symbolic link is not one)."""
    try:
        entries = list(os.scandir(out))
    except FileNotFoundError:
        return []
    return sorted(Path(e.path) for e in entries if STEP.match(e.name) and e.is_dir(follow_symlinks=False))


def is_marked(out: Path) -> bool:
    """Whether the kit's marker is there: a plain file (not a link) holding a run's identity."""
    try:
        identity = json.loads(read_own(out / MARKER))
    except (OSError, ValueError):
        return False
    return isinstance(identity, dict) and isinstance(identity.get("run"), str)


def mark(out: Path, model: str) -> None:
    """Write the marker of a new run (a new identity)."""
    identity = {"run": uuid.uuid4().hex, "model": model, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    replace_file(out / MARKER, json.dumps(identity, sort_keys=True) + "\n")


def contents(out: Path) -> list[str]:
    """The entries of a folder that holds no run, by name (folders with a trailing /), but for its
    lock and the leftovers of the kit's writes: what a new run there would move in among."""
    try:
        entries = list(os.scandir(out))
    except FileNotFoundError:
        return []
    return sorted(e.name + ("/" if e.is_dir(follow_symlinks=False) else "") for e in entries
                  if not (e.name == LOCK or LEFTOVER.match(e.name)))


def remove_run(out: Path) -> None:
    """Delete what a run wrote in `out`, by exact name: its step folders, their leftovers, the
    pointer, metrics, settings and marker. Anything else there stays."""
    for folder in step_folders(out):
        shutil.rmtree(folder)
    remove_leftovers(out)
    for name in FILES:
        path = out / name
        if path.is_symlink() or path.is_file():
            path.unlink()


def remove_leftovers(out: Path) -> None:
    """The temporary folders and files of writes that were killed midway."""
    for entry in os.scandir(out):
        if LEFTOVER.match(entry.name):
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path, ignore_errors=True)
            else:
                os.unlink(entry.path)


# ----------------------------------------------------------------------------- writing safely
class LinkRefused(OSError):
    """A symbolic link where the kit writes one of its own files."""

    def __str__(self):
        return f"{self.filename}: {self.strerror}"


def open_own(path: Path, flags: int, mode: int = 0o644) -> int:
    """os.open of one of the kit's files, refusing a symbolic link there (O_NOFOLLOW): a link the
    kit did not make would send its writes to someone else's file."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LinkRefused(errno.ELOOP, "a symbolic link, which tinytorch does not write through; remove it",
                              str(path)) from None
        raise


def read_own(path: Path) -> str:
    fd = open_own(path, os.O_RDONLY)
    with os.fdopen(fd, "rb") as handle:
        return handle.read().decode("utf-8")


def replace_file(path: Path, text: str) -> None:
    """Replace `path` with `text` in one rename, through a temporary file created new (O_EXCL):
    a crash leaves the old content or the new, and a planted link is never written through."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)  # a stale one (of a killed write), or a planted link: removed, not followed
    fd = open_own(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(text.encode("utf-8"))
        os.replace(tmp, path)  # replaces a link at `path` itself, never its target
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def append_line(path: Path, line: str) -> None:
    """Append one line whole or not at all: one write at the end of the file, cut back to where it
    was when the write fails midway (a full disk), so that no record is ever half there."""
    data = line.encode("utf-8")
    fd = open_own(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        end = os.fstat(fd).st_size
        try:
            if os.write(fd, data) != len(data):
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        except OSError:
            os.ftruncate(fd, end)
            raise
    finally:
        os.close(fd)


def check_writable(out: Path, probe_bytes: int = 65536) -> None:
    """Fail before training starts when `out` cannot be written: a file of probe_bytes written
    under a fresh name (mkstemp: never one that exists), then removed."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test-", dir=out)
        try:
            os.write(fd, b"\0" * probe_bytes)
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as err:
        raise ValueError(f"cannot write to the run folder {out}: {err.strerror or err}") from None
