"""The README's and docs' commands run as written, from a folder that is not the repo: each
Python block is run in a fresh interpreter there (the gradio_client one against a demo served on
127.0.0.1), and each `python -m pretrain|tinytorch|demos` line of a shell block is parsed by the
command's own parser, so a renamed flag or a wrong value fails here before a reader meets it.
Blocks that publish to the Hub only have their syntax checked: the tests reach no network."""

import ast
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

# gradio's own queue code trips pandas 3 deprecation warnings; they are not ours to fix
pytestmark = [pytest.mark.filterwarnings("ignore:.*no_silent_downcasting"),
              pytest.mark.filterwarnings("ignore:The copy keyword is deprecated")]
REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[tuple[str, str]]:
    """(page name, block text) of every fenced block in that language."""
    return [(page.name, m.group(2)) for page in PAGES for m in FENCE.finditer(page.read_text())
            if m.group(1) == language]


def run_python(code: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={"PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False",
                               "HOME": str(cwd), "OPENBLAS_NUM_THREADS": "1"})


def test_the_pages_have_the_blocks_this_test_runs():
    assert len(blocks("python")) >= 3 and len(blocks("bash")) >= 6 and len(commands()) >= 15


@pytest.mark.parametrize("page, code", [b for b in blocks("python") if "Client(" not in b[1]],
                         ids=lambda v: v if v.endswith(".md") else "")
def test_each_python_block_runs_from_another_folder(page, code, tmp_path):
    ast.parse(code)
    code = "\n".join(line for line in code.splitlines() if "push_to_hub" not in line)  # a Hub account's
    done = run_python(code, tmp_path)
    assert done.returncode == 0, f"{page}:\n{code}\n{done.stderr[-2000:]}"


def test_the_gradio_client_block_runs_against_a_served_demo(tmp_path):
    from demos.app import build_app
    from demos.screenshots import free_port
    from demos.ui import launch_kwargs
    from test_demos import make_copilot, make_level1

    (code,) = [c for _, c in blocks("python") if "Client(" in c]
    copilot, level1 = make_copilot(tmp_path / "copilot"), make_level1(tmp_path / "level1")
    demo = build_app(copilot_checkpoints=[str(copilot)], level1_checkpoint=str(level1))
    _, url, _ = demo.launch(server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True, quiet=True,
                            **launch_kwargs())
    try:
        done = run_python(code.replace("http://127.0.0.1:7860/", url), tmp_path)
    finally:
        demo.close()
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("\n") >= 2  # what the block prints: the completion, then the held-out figures


def commands() -> list[tuple[str, list[str]]]:
    """(page, argv after `python -m`) of every python -m line in the shell blocks, comments cut."""
    found = []
    for page, text in blocks("bash"):
        for line in text.splitlines():
            line = line.split("  #")[0].strip()
            match = re.match(r"^(?:\.venv/bin/)?(?:python|torchrun .*?) -m (\S+)(.*)$", line)
            if match and "$(" not in line and "[" not in line:
                found.append((page, [match.group(1), *shlex.split(match.group(2))]))
    return found


@pytest.mark.parametrize("page, argv", commands(), ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_each_command_line_parses(page, argv):
    module, args = argv[0], argv[1:]
    if module == "pretrain":
        from pretrain.config import parse_args

        cfg = parse_args(args)
        assert cfg.model in ("level1", "copilot-tiny", "copilot", "copilot-large")
    elif module == "pretrain.validate":
        assert args and all(not a.startswith("--") or a == "--corpus" for a in args)
    elif module == "tinytorch":
        from tinytorch.__main__ import build_parser

        build_parser().parse_args(args)
    elif module == "demos":
        from demos.__main__ import build_parser

        build_parser().parse_args(args)
    else:
        pytest.fail(f"{page}: a command of an unknown module: python -m {module}")
