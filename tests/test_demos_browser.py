"""A real browser (Debian's chromium, driven by Playwright's Python API) loads the Copilot demo,
fine-tunes a few steps, and finds the before/after comparison on the page. The screenshot is kept
in the test's tmp_path as an artifact. Skips, saying why, where chromium or playwright is absent.
"""

import os

import pytest

from demos.screenshots import CHROMIUM, ZIP_LINK, copilot_walkthrough, free_port, level1_walkthrough, reset_and_fail_a_load

pytest.importorskip("gradio", reason="gradio not installed")
pytest.importorskip("playwright.sync_api", reason="playwright (python) not installed")
if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium; .ci/run "
                "does) for the browser test", allow_module_level=True)

from demos.app import build_app  # noqa: E402
from demos.curves import COPILOT_COLOURS, LEVEL1_COLOURS  # noqa: E402
from demos.screenshots import browser_page, set_steps, visible  # noqa: E402
from demos.ui import launch_kwargs  # noqa: E402

from test_demos import make_copilot, make_level1  # noqa: E402

pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]


@pytest.fixture(scope="module")
def url(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    demo = build_app(copilot_checkpoints=[str(make_copilot(root / "copilot"))],
                     level1_checkpoint=str(make_level1(root / "level1")))
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                            quiet=True, **launch_kwargs())
    yield url
    demo.close()


def test_a_student_fine_tunes_and_sees_before_and_after(url, tmp_path):
    with browser_page() as page:
        copilot_walkthrough(page, url, steps=20)
        assert visible(page, "Done: step 20/20")
        table = page.locator("table", has_text="Pretrained").filter(has_text="Fine-tuned")
        assert table.count() == 1 and table.locator("tr").count() == 5  # a header and 4 prompts
        assert visible(page, "On the held-out part: what it learned")
        assert visible(page, "On the training part: what it memorized")
        page.screenshot(path=str(tmp_path / "copilot.png"), full_page=True)

        level1_walkthrough(page, url)
        assert visible(page, "correct")
        page.screenshot(path=str(tmp_path / "level1.png"), full_page=True)
    print(f"screenshots: {tmp_path}")
    assert (tmp_path / "copilot.png").stat().st_size > 10_000


def test_reset_and_a_failed_load_leave_a_page_that_tells_the_truth(url, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the Hub, unreachable (and never the Internet)
    with browser_page() as page:
        copilot_walkthrough(page, url, steps=10)
        assert page.get_by_role("combobox", name="Training example", exact=True).input_value() == "pantry.py"
        reset_and_fail_a_load(page)  # waits for the cleared comparison and the dropdown naming the loaded model
        assert page.locator("table >> visible=true").filter(has_text="Fine-tuned").count() == 0
        assert not page.locator(ZIP_LINK).is_visible()
        assert not page.get_by_text("Each row is a character").is_visible()  # the old attention map is gone

        page.get_by_label("Learning rate").fill("5")  # out of range: the fine-tune fails before it starts
        page.get_by_role("button", name="Start fine-tuning").click()
        visible(page, "Learning rate must be a number")
        status = page.locator(".block").filter(has=page.get_by_text("Back to the pretrained weights."))
        badge = status.locator(".wrap > .error").last
        badge.wait_for(state="visible")
        badge_box = badge.bounding_box()
        text_box = status.get_by_text("Back to the pretrained weights.").bounding_box()
        assert badge_box["y"] + badge_box["height"] <= text_box["y"]  # above the text, not over it


def test_code_editors_indent_by_four_spaces_and_try_it_lists_suggestions(url, tmp_path):
    with browser_page() as page:
        page.goto(url)
        visible(page, "parameters")
        editor = page.locator(".cm-content").first  # the Prompt of Try it
        editor.click()
        page.keyboard.press("Control+A")
        page.keyboard.press("Delete")
        page.keyboard.type("def f(x):")
        page.keyboard.press("Enter")  # after a colon: the line's indentation + 4
        page.keyboard.type("if x:")
        page.keyboard.press("Enter")
        page.keyboard.type("pass")
        page.keyboard.press("Enter")  # keeps the indentation
        page.keyboard.press("Tab")  # to the next multiple of 4
        page.keyboard.type("y")
        text = page.evaluate("() => document.querySelector('.cm-content').cmTile.root.view.state.doc.toString()")
        assert text == "def f(x):\n    if x:\n        pass\n            y"
        page.get_by_role("button", name="Generate", exact=True).click()
        visible(page, "Suggestions, most likely first")
        page.screenshot(path=str(tmp_path / "try-it.png"), full_page=True)


def drawn_lines(page, colours: set) -> None:
    """Wait until the visible tab's loss plot draws lines of exactly these colours (vega's SVG: one
    path per series, stroked in its colour; no plot, none)."""
    plot = "[...document.querySelectorAll('.vega-embed')].filter(plot => plot.offsetParent).slice(0, 1)"
    drawn = (f"() => [...new Set({plot}.flatMap(plot => [...plot.querySelectorAll('g.mark-line path')])"
             ".filter(path => (path.getAttribute('d') || '').length > 2).map(path => path.getAttribute('stroke')))]")
    try:
        page.wait_for_function(f"([colours]) => JSON.stringify(({drawn})().sort()) === JSON.stringify(colours)",
                               arg=[sorted(colours)], timeout=30_000)
    except Exception:
        raise AssertionError(f"lines drawn: {page.evaluate(drawn)}, expected {sorted(colours)}") from None
    if colours:  # and both axes say what they show, inside the plot (gradio once drew the y title off it)
        titles = page.evaluate(
            f"() => {plot}.flatMap(plot => [...plot.querySelectorAll('.role-axis-title text')].filter(title => {{"
            "const inner = title.getBoundingClientRect(), outer = plot.querySelector('svg').getBoundingClientRect();"
            "return inner.left >= outer.left && inner.right <= outer.right && inner.width > 0; }))"
            ".map(title => title.textContent)")
        assert sorted(titles) == ["loss (bits per character)", "step"]


COPILOT_LINES = set(COPILOT_COLOURS.values())  # batches, their average, held-out, the step kept


def test_runs_resets_and_loads_throw_nothing_in_the_page(url):
    """The curve is never set to None once drawn: gradio's LinePlot then threw `Cannot read
    properties of null (reading 'offsetWidth')`, on every fine-tune after the first, on Reset and
    on Load. They show empty axes instead, and the next run draws all its lines."""
    with browser_page() as page:
        thrown = []
        page.on("pageerror", lambda err: thrown.append(str(err)))
        copilot_walkthrough(page, url, steps=10)
        drawn_lines(page, COPILOT_LINES)
        set_steps(page, 12)
        page.get_by_role("button", name="Start fine-tuning").click()
        visible(page, "Done: step 12/12")
        drawn_lines(page, COPILOT_LINES)
        page.get_by_role("button", name="Reset to the pretrained weights").click()
        visible(page, "Back to the pretrained weights")
        drawn_lines(page, set())
        assert thrown == []
        page.get_by_role("button", name="Start fine-tuning").click()
        visible(page, "Done: step 12/12")
        drawn_lines(page, COPILOT_LINES)
        page.get_by_role("button", name="Load", exact=True).click()
        drawn_lines(page, set())
        page.get_by_role("button", name="Start fine-tuning").click()
        visible(page, "Done: step 12/12")
        drawn_lines(page, COPILOT_LINES)
        level1_walkthrough(page, url, steps=10)
        drawn_lines(page, set(LEVEL1_COLOURS.values()))
        set_steps(page, 12)
        page.get_by_role("button", name="Train", exact=True).click()
        visible(page, "Done: step 12/12")
        page.wait_for_timeout(800)  # the last curve update
        drawn_lines(page, set(LEVEL1_COLOURS.values()))
        assert thrown == []
