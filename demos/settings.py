"""The classroom server's settings, read from TINYTORCH_DEMO_* environment variables
(docs/classroom.md lists each with its default and why). Every value is checked against its
range when the module that uses it loads: a mistyped one stops the server with a line naming the
variable and what it takes, never a traceback from int() or a limit that makes no sense (no
fine-tunes at all, sessions released the moment they open).
"""

from __future__ import annotations

import math
import os


class SettingError(ValueError):
    """A TINYTORCH_DEMO_* variable holds a value outside its range; the message says which and what to do."""


def number(name: str, default: float, minimum: float, maximum: float | None = None, whole: bool = False,
           default_said: str | None = None):
    """The value of environment variable `name`, or `default` when it is unset or blank.
    whole: an int (else a float); minimum <= value <= maximum (no maximum: any finite value).
    default_said: the default as the error message names it (else its figure)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if whole else float(raw)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value < minimum or (maximum is not None and value > maximum):
        kind = "a whole number" if whole else "a number"
        span = f"from {minimum:,} to {maximum:,}" if maximum is not None else f"of at least {minimum:,}"
        raise SettingError(f"{name}={raw!r}: expected {kind} {span}. Set it in range, or unset it for the "
                           f"default ({default_said or f'{default:,}'}); docs/classroom.md says what each setting does.")
    return value


def per_core(name: str) -> int:
    """A count of things that run at once, each on one thread: the variable's value, or, when it
    is unset or 0, the machine's cores."""
    return number(name, 0, 0, 1024, whole=True, default_said="one per core") or os.cpu_count() or 1
