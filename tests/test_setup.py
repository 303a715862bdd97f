"""The set-up a newcomer meets: `make demo PORT=...`, what git ignores, the message for a busy port."""

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_demo_passes_port_on():
    env = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}  # under make test
    done = subprocess.run(["make", "-n", "--no-print-directory", "demo", "PORT=7863"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == ".venv/bin/python -m demos all --port 7863"


@pytest.mark.skipif(shutil.which("git") is None or not (REPO / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path, ignored", [("my-copilot/config.json", True), ("my-level1/model.safetensors", True),
                                           ("checkpoints/copilot/config.json", False), ("demos/my-x.py", False)])
def test_git_ignores_the_folders_the_readme_saves_into(path, ignored):
    done = subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=REPO, timeout=60)
    assert done.returncode == (0 if ignored else 1)


def test_a_busy_port_says_how_to_choose_another_with_make_too(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run([sys.executable, "-m", "demos", "level1", "--port", str(port)], cwd=tmp_path,
                              capture_output=True, text=True, timeout=120,
                              env={**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"})
    assert done.returncode == 1
    assert done.stderr.strip().endswith(f"Try --port {port + 1} (with make: make demo PORT={port + 1}).")
