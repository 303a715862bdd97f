"""Gradio glue both demos share: handlers' errors as messages (never tracebacks), the theme,
and per-session state."""

from __future__ import annotations

import functools
import inspect
import logging
from html import escape

import gradio as gr

from tinytorch.checkpoint import CheckpointError

from . import editor, settings
from .common import DemoError

log = logging.getLogger("demos")
EXPECTED = (DemoError, CheckpointError)
SESSION_TTL = 2 * 3600  # gradio's own limit on a session's state; demos/sessions.py releases it sooner
# Fine-tunes running at once: one per core by default, since each runs on one thread; the rest
# wait in the queue, which shows them their place. Each holds a model copy and Adam's moments
# (about 4x the weights), so this bounds memory too.
FINETUNES = settings.per_core("TINYTORCH_DEMO_FINETUNES")
THEME = gr.themes.Soft(primary_hue="green", secondary_hue="blue", neutral_hue="slate")
CSS = """
.gradio-container { max-width: 1280px !important; margin: auto; }
.tt-step h3 { margin-bottom: 0 !important; }
/* gradio draws a failed output's "Error" badge over the top of its text: make room above it */
.block:has(> .wrap > .error) { padding-top: 34px !important; }
"""


def message(err: Exception) -> gr.Error:
    """The page's error toast, which renders HTML: so the text is escaped (it may quote a
    config.json from the Hub, or what the student typed)."""
    if isinstance(err, EXPECTED):
        return gr.Error(escape(str(err)), duration=20, print_exception=False)
    # A bug, not the student's input: the traceback goes to the server log, a short note to the
    # page (the type only: an exception's text can hold this machine's paths).
    log.error("unexpected error in a demo handler", exc_info=err)
    return gr.Error(f"Something went wrong ({type(err).__name__}; the server log has the details). The demo "
                    "is still running; try again, or with other settings.", duration=20, print_exception=False)


def friendly(fn):
    """Wrap a handler so that any exception reaches the page as a short message (gr.Error)."""
    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def stream(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as err:  # noqa: BLE001 - every error becomes a message
                raise message(err) from None
        return stream

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as err:  # noqa: BLE001
            raise message(err) from None
    return call


def close_session(value) -> None:
    """gr.State's delete_callback: stop its fine-tune, remove its temporary files."""
    close = getattr(value, "close", None)
    if close is not None:
        close()


def session_state() -> gr.State:
    return gr.State(None, time_to_live=SESSION_TTL, delete_callback=close_session)


def keep_spaces(code: gr.Code) -> gr.Code:
    """`code`, made to keep its value's leading and trailing spaces (gr.Code strips them): the
    indentation of a prompt's first line is part of the prompt. (An instance attribute, not a
    subclass: gradio writes a .pyi file beside every module that subclasses a component.)"""
    strip = code.postprocess
    code.postprocess = lambda value: value if isinstance(value, str) else strip(value)
    return code


def heading(number: str, title: str, hint: str = "") -> gr.Markdown:
    text = f"### {number} · {title}" + (f"\n{hint}" if hint else "")
    return gr.Markdown(text, elem_classes="tt-step")


def launch_kwargs() -> dict:
    """What every launch passes: the look, and the upload cap (the handlers check sizes too)."""
    return {"theme": THEME, "css": CSS, "max_file_size": "1mb", "footer_links": ["api"], "head": editor.HEAD}
