"""Both demos as tabs: `demo` is what a Hugging Face Space (or `gradio demos/app.py`) serves.

Cheap to import: the checkpoints load when the first visitor needs them.
"""

from __future__ import annotations

import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script (a Space runs `python demos/app.py`): find the repo
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from demos import prefer_one_blas_thread

    prefer_one_blas_thread()  # before gradio imports numpy

import gradio as gr  # noqa: E402

from demos import copilot, copilot_ui, level1, level1_ui, sessions  # noqa: E402
from demos.ui import launch_kwargs  # noqa: E402

TITLE = "tinytorch: a Copilot you can fine-tune"


def build_app(tabs=("copilot", "level1"), copilot_checkpoints=None, level1_checkpoint=None) -> gr.Blocks:
    """A Blocks app with the chosen demos, first tab first. Checkpoints default to the shipped ones."""
    builders = {
        "copilot": lambda demo: copilot_ui.build(demo, copilot.Copilot(copilot_checkpoints)),
        "level1": lambda demo: level1_ui.build(demo, level1.Level1(level1_checkpoint)),
    }
    labels = {"copilot": "Copilot", "level1": "Level 1: memorize"}
    # delete_cache: every hour, remove files older than an hour that gradio keeps for uploads and
    # downloads, so a day of classes does not fill the disk.
    with gr.Blocks(title=TITLE, delete_cache=(3600, 3600)) as demo:
        if len(tabs) == 1:
            builders[tabs[0]](demo)
        else:
            with gr.Tabs():
                for name in tabs:
                    with gr.Tab(labels[name], id=name):
                        builders[name](demo)
        sessions.watch(demo)  # a student's models and files go when they leave or idle
    demo.queue(default_concurrency_limit=8)
    return demo


demo = build_app()

if __name__ == "__main__":
    from demos import configure_process

    configure_process()
    demo.launch(**launch_kwargs())
