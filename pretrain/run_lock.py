"""One run at a time in a run folder: a lock that the run holds from start to exit.

The lock is an advisory lock (flock) on RUN_FOLDER/.lock, and the kernel drops it when its process
ends, however it ends: a run killed outright leaves no lock behind, so a stale lock needs no
cleanup and no guessing from pids. The file names the holder (pid, host, start time) for the
message a second run gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from .run_files import LOCK, open_own


class RunFolderBusy(ValueError):
    """Another process holds the run folder."""


@contextmanager
def hold(out: Path):
    """Hold `out`'s lock for the body of the with statement, or raise RunFolderBusy naming the holder."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = open_own(out / LOCK, os.O_RDWR | os.O_CREAT)  # a planted link is refused, never truncated
    except OSError as err:
        raise ValueError(f"cannot write to the run folder {out}: {out / LOCK}: {err.strerror or err}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunFolderBusy(f"{out} is in use by another run{_holder(fd)}") from None
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a lock file that names nobody: the run ended cleanly
    finally:
        os.close(fd)  # releases the lock


def _holder(fd: int) -> str:
    """': pid 123 on host h, started 2026-01-31 22:05:09 UTC; wait ...', from the lock file the holder wrote."""
    try:
        holder = json.loads(os.pread(fd, 4096, 0))
        started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder["started"]))
        pid, host = int(holder["pid"]), str(holder["host"])
    except (ValueError, KeyError, TypeError, OSError):
        # it took the lock an instant ago and has not written its name yet
        return ", which is just starting; wait for it to finish, stop it, or give another --out"
    stop = f"kill -INT {pid}" if host == socket.gethostname() else f"Ctrl-C on {host}"
    return (f": pid {pid} on host {host}, started {started}; wait for it to finish, stop it "
            f"({stop}: it saves first), or give another --out")
