"""Releasing a student's session: its models, gradients and temporary files go GRACE_SECONDS
after the student leaves (the browser tab closes, or an API client calls close()) or once they
have sent nothing for IDLE_SECONDS, instead of after gradio's hour for a closed session. The
grace is for a page that reconnects after a network blip: a request from it keeps the session.

A session object (CopilotSession, Level1Session) has `last_used` (time.monotonic() of its last
request) and `close()`. Gradio keeps them per browser tab in `demo.state_holder`, keyed by the
session hash; releasing one removes that entry (a returning client starts a fresh session) and
hands the freed memory back to the OS.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref

import gradio as gr

from tinytorch.memory import release_free_memory

from . import settings

# A student who sent nothing for this long has left (a lecture pause is shorter; a fine-tune
# redone takes seconds). TINYTORCH_DEMO_IDLE_MINUTES changes it.
IDLE_SECONDS = 60 * settings.number("TINYTORCH_DEMO_IDLE_MINUTES", 15, 1, 24 * 60)
GRACE_SECONDS = 30
SWEEP_SECONDS = 5  # how often departed and idle sessions are looked for
log = logging.getLogger("demos")


def release(demo, session_hash: str) -> int:
    """Close every session object of `session_hash` and forget the entry; returns how many were closed."""
    with demo.state_holder.lock:  # gradio's own, around its changes to the same dicts
        entry = demo.state_holder.session_data.pop(session_hash, None)
        demo.state_holder.time_last_used.pop(session_hash, None)
    if entry is None:
        return 0
    closed = 0
    for value in list(entry.state_data.values()):
        if callable(getattr(value, "close", None)):
            value.close()
            closed += 1
    entry.state_data.clear()
    release_free_memory()
    return closed


def last_used(entry) -> float | None:
    """When the session objects of one gradio session entry were last used (None: it has none)."""
    used = [getattr(v, "last_used", None) for v in list(entry.state_data.values())]
    return max((t for t in used if t is not None), default=None)


def release_stale(demo, departed: dict, idle_seconds: float, grace_seconds: float) -> int:
    """Release the sessions idle for longer than idle_seconds, and those that left (departed:
    session hash -> time.monotonic() when its page closed) grace_seconds ago and sent nothing
    since; returns how many."""
    now, stale = time.monotonic(), []
    with demo.state_holder.lock:
        entries = list(demo.state_holder.session_data.items())
    for session_hash, entry in entries:
        used, left = last_used(entry), departed.get(session_hash)
        if used is not None and now - used > idle_seconds:
            stale.append(session_hash)
        elif left is not None and now - left > grace_seconds and (used is None or used < left):
            stale.append(session_hash)
    for session_hash in list(departed):
        if session_hash not in demo.state_holder.session_data or now - departed[session_hash] > grace_seconds:
            departed.pop(session_hash, None)
    for session_hash in stale:
        release(demo, session_hash)
    return len(stale)


def watch(demo) -> None:
    """Call inside the app's Blocks: note when a page closes, and every SWEEP_SECONDS release
    the sessions that left or idled (a daemon thread, which ends when the app closes). The three
    settings are read at each sweep."""
    departed: dict[str, float] = {}

    def left(request: gr.Request):
        if request is not None and request.session_hash:
            departed[request.session_hash] = time.monotonic()

    demo.unload(left)
    app = weakref.ref(demo)

    def sweep():
        launched = False
        while (found := app()) is not None:
            if found.is_running:
                launched = True
                try:
                    release_stale(found, departed, IDLE_SECONDS, GRACE_SECONDS)
                except Exception:  # noqa: BLE001 - a bug here must not stop the sweeping
                    log.exception("releasing sessions failed")
            elif launched:  # closed
                return
            del found  # hold no reference while asleep
            time.sleep(SWEEP_SECONDS)

    threading.Thread(target=sweep, name="release-idle-sessions", daemon=True).start()
