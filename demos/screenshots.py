"""Drive the demos in a real browser (Debian's chromium through Playwright) and take the
screenshots the README shows:

    python -m demos.screenshots [--out docs]   # writes docs/copilot.png and docs/level1.png

It serves both demos on the shipped checkpoints (127.0.0.1, a free port), fine-tunes the Copilot
on the first example, compares, looks inside, then trains Level 1 from scratch. The browser test
(tests/test_demos_browser.py) walks the same steps on tiny checkpoints.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
# Headless and quiet: no GPU, no QUIC, no first-run pages, no background traffic of its own.
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def browser_page(width: int = 1280, height: int = 900):
    """A fresh chromium page (its own temporary profile), closed afterwards."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="tinytorch-chromium-") as profile, sync_playwright() as p:
        context = p.chromium.launch_persistent_context(profile, executable_path=CHROMIUM, args=FLAGS,
                                                       headless=True, viewport={"width": width, "height": height})
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


def visible(page, text: str, timeout: float = 60_000):
    """Wait until `text` shows on the page (gradio keeps hidden copies of some outputs)."""
    return page.wait_for_selector(f"text={text} >> visible=true", timeout=timeout)


def copilot_walkthrough(page, url: str, steps: int | None = None) -> None:
    """Generate, fine-tune (watching the curve), compare, look inside: what a student does."""
    page.goto(url)
    visible(page, "Choose a model")
    visible(page, "parameters")  # the model card: the default checkpoint has loaded
    page.get_by_role("button", name="Generate", exact=True).click()
    visible(page, "written by the model")
    if steps is not None:
        set_steps(page, steps)
    page.get_by_role("button", name="Start fine-tuning").click()
    visible(page, "Done: step")
    page.get_by_role("button", name="Compare", exact=True).click()
    visible(page, "Your own names completed")
    visible(page, "Your own lines completed")
    page.get_by_role("button", name="Save my fine-tuned model (.zip)").click()
    visible(page, "copilot-finetuned")  # the zip, ready to download
    page.get_by_role("button", name="Show attention").click()
    visible(page, "Each row is a character")
    page.wait_for_timeout(800)  # let the plot finish drawing


def set_steps(page, steps: int) -> None:
    box = page.locator("input[aria-label='number input for Steps'] >> visible=true")
    box.fill(str(steps))
    box.press("Enter")


def level1_walkthrough(page, url: str, steps: int | None = None) -> None:
    """Evaluate, then train from random weights (50 steps leave a few pairs wrong: both colours show)."""
    page.goto(url)
    page.get_by_role("tab", name="Level 1").click()
    page.get_by_role("button", name="Evaluate", exact=True).click()
    visible(page, "correct")
    if steps is not None:
        set_steps(page, steps)
    page.get_by_role("button", name="Train", exact=True).click()
    visible(page, "Done: step")
    page.wait_for_timeout(800)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="docs", help="folder for copilot.png and level1.png")
    parser.add_argument("--copilot", help="the Copilot checkpoint to show (default: the shipped one)")
    args = parser.parse_args(argv)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from . import configure_process, prefer_one_blas_thread

    prefer_one_blas_thread()
    from .app import build_app
    from .ui import launch_kwargs

    configure_process()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    demo = build_app(copilot_checkpoints=[args.copilot] if args.copilot else None)
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    try:
        with browser_page() as page:
            copilot_walkthrough(page, url)
            page.screenshot(path=str(out / "copilot.png"), full_page=True)
            level1_walkthrough(page, url, steps=50)
            page.screenshot(path=str(out / "level1.png"), full_page=True)
    finally:
        demo.close()
    print(f"wrote {out / 'copilot.png'} and {out / 'level1.png'}")


if __name__ == "__main__":
    main()
