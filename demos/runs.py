"""Which fine-tune owns a session's weights.

A fine-tune belongs to the weights it started on. A Load, a Reset, a new fine-tune or the end of
the session replaces them, and so ends the run: it stops before its next step, writes nothing more
into the session (no curve point, no step count) and its stream says it was replaced. Each run
trains a model object of its own (demos/copilot.py clones it at the start), so a run that is still
ending never touches the weights of the one after it.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager


class Runs:
    """A session's fine-tunes: a counter that every change of the session's weights advances."""

    def __init__(self):
        self._current = 0
        self._active = 0  # runs still iterating (see own)
        self.lock = threading.RLock()  # held around a change of weights, and around a run's writes

    def start(self) -> int:
        """A new run: the one before it (if any) ends. Returns the new run's token."""
        with self.lock:
            self._current += 1
            return self._current

    @contextmanager
    def replacing(self):
        """Around a Load or Reset: whatever run there was ends, and writes nothing while the
        session's state changes."""
        with self.lock:
            self._current += 1
            yield

    def owns(self, run: int) -> bool:
        return run == self._current

    @contextmanager
    def writing(self, run: int):
        """Around a run's writes into the session: yields whether it still owns it (write only then)."""
        with self.lock:
            yield self.owns(run)

    @property
    def training(self) -> bool:
        """Whether a run of this session is taking steps now (its model must stay in memory)."""
        return self._active > 0

    def own(self, handler):
        """A fine-tune handler's generator, counted as training while it is iterated (until it
        ends, fails or is closed): its model stays in memory meanwhile (demos/copies.py)."""
        with self.lock:
            self._active += 1
        try:
            yield from handler
        finally:
            with self.lock:
                self._active -= 1
