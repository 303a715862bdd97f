"""Drive the demos in a real browser (Debian's chromium through Playwright) and take the
screenshots the README shows:

    python -m demos.screenshots [--out docs]   # writes docs/copilot.png and docs/level1.png
    python -m demos.screenshots --states DIR   # and every state of the Copilot, one PNG each

It serves both demos on the shipped checkpoints (127.0.0.1, a free port), fine-tunes the Copilot
on the first example, compares, looks inside, then trains Level 1 from scratch. With --states it
also shows the page after Generate, during and after the fine-tune, after Compare, after Reset and
after a Load that fails. The browser test (tests/test_demos_browser.py) walks the same steps on
tiny checkpoints.
"""

from __future__ import annotations

import argparse
import os
import socket
import tempfile
from contextlib import contextmanager
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
ZIP_LINK = 'a[href$="copilot-finetuned.zip"]'
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


def copilot_walkthrough(page, url: str, steps: int | None = None, shoot=lambda state: None) -> None:
    """Generate, fine-tune (watching the curve), compare, look inside: what a student does.
    shoot(state) is called at each state worth a picture."""
    page.goto(url)
    visible(page, "Choose a model")
    visible(page, "parameters")  # the model card: the default checkpoint has loaded
    page.get_by_role("button", name="Generate", exact=True).click()
    visible(page, "written by the model")
    shoot("generated")
    if steps is not None:
        set_steps(page, steps)
    page.get_by_role("button", name="Start fine-tuning").click()
    page.wait_for_selector("text=/(Training|Done): step/ >> visible=true", timeout=60_000)
    if page.get_by_text("Training: step").is_visible():  # a tiny model may finish before the first update
        shoot("fine-tuning")
    visible(page, "Done: step")
    page.wait_for_timeout(500)  # the last curve update
    shoot("fine-tuned")
    page.get_by_role("button", name="Compare", exact=True).click()
    visible(page, "Your own names completed")
    visible(page, "Your own lines completed")
    shoot("compared")
    page.get_by_role("button", name="Save my fine-tuned model (.zip)").click()
    page.wait_for_selector(f"{ZIP_LINK} >> visible=true", timeout=60_000)  # the zip, ready to download
    page.get_by_role("button", name="Show attention").click()
    visible(page, "Each row is a character")
    page.wait_for_timeout(800)  # let the plot finish drawing


def reset_and_fail_a_load(page, shoot=lambda state: None, bad: str = "nobody/no-such-model") -> None:
    """Reset to the pretrained weights, then Load a Hub id that cannot load; the page must say so
    and keep (and name) the model it has."""
    page.get_by_role("button", name="Reset to the pretrained weights").click()
    visible(page, "Back to the pretrained weights")
    visible(page, "Fine-tune first, then compare.")
    shoot("reset")
    loaded = model_choice(page).input_value()
    model_choice(page).fill(bad)
    page.get_by_role("button", name="Load", exact=True).click()
    visible(page, f"Could not load '{bad}'")
    page.wait_for_function("([name]) => document.querySelector('input[aria-label=\"Model\"]').value === name",
                           arg=[loaded], timeout=30_000)
    shoot("failed-load")


def model_choice(page):
    return page.get_by_role("combobox", name="Model", exact=True)


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
    parser.add_argument("--states", metavar="DIR", help="also write copilot-STATE.png for each state here")
    parser.add_argument("--port", type=int, default=0, help="where to serve the demos (default: a free port)")
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
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=args.port or free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    try:
        with browser_page() as page:
            def shoot(state):
                if args.states:
                    Path(args.states).mkdir(parents=True, exist_ok=True)
                    page.screenshot(path=str(Path(args.states) / f"copilot-{state}.png"), full_page=True)

            copilot_walkthrough(page, url, shoot=shoot)
            page.screenshot(path=str(out / "copilot.png"), full_page=True)
            if args.states:
                reset_and_fail_a_load(page, shoot)
            level1_walkthrough(page, url, steps=50)
            page.screenshot(path=str(out / "level1.png"), full_page=True)
    finally:
        demo.close()
    print(f"wrote {out / 'copilot.png'} and {out / 'level1.png'}")


if __name__ == "__main__":
    main()
