"""Where the shipped checkpoints live: a fact of the repository's layout, kept here alone.

They sit in checkpoints/ beside the package (a clone, or an editable install), so their names
work from any folder: "copilot", or "checkpoints/copilot" as the README writes it.
"""

from __future__ import annotations

from pathlib import Path

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "checkpoints"
SHIPPED_NAMES = ("copilot", "copilot-large", "copilot-tiny", "level1")
SHIPPED = ", ".join(SHIPPED_NAMES) + " (by name, from any folder)"  # for error messages


def shipped_folder(name: str) -> Path | None:
    """The folder of a shipped checkpoint named `name` or `checkpoints/name`; None for other names."""
    name = name.strip().rstrip("/")
    if name.startswith("checkpoints/"):
        name = name[len("checkpoints/"):]
    return SHIPPED_DIR / name if name in SHIPPED_NAMES else None
