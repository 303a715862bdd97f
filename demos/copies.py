"""Sessions' own model copies, within one memory budget for the whole server.

A session that fine-tunes trains a copy of its model (20 MB at the 5M parameters a student may
load), and keeps it until it resets or leaves: a class of sessions that each fine-tune once would
otherwise hold copies without bound. All copies together are held to COPIES_MB
(TINYTORCH_DEMO_COPIES_MB): when a new copy would go over it, the copies of the sessions idle the
longest are spilled to a file in their own session folder (their weights, nothing else), and come
back on their next request. A copy being trained is never spilled; when only those are left, the
new copy is refused with a message. Adam's state of the fine-tunes running (at most
demos.ui.FINETUNES) comes on top, for as long as they run.
"""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

from tinytorch.checkpoint import write_weights
from tinytorch.memory import release_free_memory

from . import settings
from .common import COMPUTE, DemoError

COPIES_MB = settings.number("TINYTORCH_DEMO_COPIES_MB", 1024, 1)
SPILLED = "spilled.safetensors"


class Copies:
    """The copies the server holds, and its budget for them in bytes."""

    def __init__(self, budget_bytes: float):
        self.budget = budget_bytes
        self._copies: weakref.WeakSet[Copy] = weakref.WeakSet()
        self._lock = threading.Lock()  # one admission at a time; never held while a copy is used
        self.spills = 0  # how many times a copy went to disk (for benchmarks/demo_load.py)

    def held(self) -> int:
        """Bytes of the copies in memory (or admitted and being built)."""
        return sum(c.nbytes for c in list(self._copies) if c.in_memory)

    def keep(self, model, owner) -> Copy:
        """A new copy of `model` for session `owner` (which has `last_used`, `runs` and `folder()`)."""
        copy = Copy(self, model, owner)
        self._admit(copy)
        return copy

    def _admit(self, copy: Copy) -> None:
        """Make room for `copy` (spilling the idlest copies that are not being trained) and count it
        in memory; DemoError when there is no room."""
        with self._lock:
            while self.held() + copy.nbytes > self.budget:
                idle = sorted((c for c in list(self._copies) if c is not copy and c.spillable()),
                              key=lambda c: c.last_used())
                if not any(c.spill() for c in idle):  # the idlest that can go now
                    raise DemoError(f"The server holds as many fine-tuned models as its memory allows "
                                    f"({self.budget / 2**20:,.0f} MB, all of them training now); try again "
                                    "in a minute.")
                self.spills += 1
                release_free_memory()  # the spilled weights: back to the OS, not kept by malloc
            copy.in_memory = True
            self._copies.add(copy)


class Copy:
    """One session's model: in memory, or spilled to its session folder until it is asked for."""

    def __init__(self, pool: Copies, model, owner):
        self.pool, self.config = pool, model.config
        self.nbytes = sum(p.data.nbytes for p in model.parameters())
        self._model, self._owner = model, weakref.ref(owner)
        self._file: Path | None = None
        self._lock = threading.Lock()
        self.in_memory = False  # counted by the pool (set when admitted)

    def last_used(self) -> float:
        owner = self._owner()
        return owner.last_used if owner is not None else float("-inf")

    def spillable(self) -> bool:
        owner = self._owner()
        return self.in_memory and self._model is not None and (owner is None or not owner.runs.training)

    def get(self):
        """The model, read back from its file when it was spilled (which may spill another)."""
        with self._lock:
            if self._model is None:
                from safetensors.numpy import load_file

                from tinytorch.nn import GPT

                self.pool._admit(self)
                weights = load_file(str(self._file))
                with COMPUTE:  # GPT() draws its init from the global generator (see common.clone)
                    model = GPT(self.config)
                    model.load_state_dict(weights)
                self._model = model.eval()
                self._remove_file()
            return self._model

    def spill(self) -> bool:
        """Write the weights to the owner's folder and let the model go; False when it is in use
        by another thread right now (it is then not spilled) or its owner is gone."""
        owner = self._owner()
        if owner is None or not self._lock.acquire(blocking=False):
            return False
        try:
            if self._model is None:
                return False
            path = Path(owner.folder()) / SPILLED
            write_weights(path, self._model.state_dict(), dtype=None)
            self._file, self._model, self.in_memory = path, None, False
            return True
        finally:
            self._lock.release()

    def drop(self) -> None:
        """The session let its copy go: out of memory, off the disk, out of the budget."""
        with self._lock:
            self._model, self.in_memory = None, False
            self._remove_file()

    def _remove_file(self) -> None:
        if self._file is not None:
            self._file.unlink(missing_ok=True)
            self._file = None


COPIES = Copies(COPIES_MB * 2**20)
