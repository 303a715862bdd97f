"""The Level 1 tab: a table of pairs, Evaluate, Train with a live loss curve."""

from __future__ import annotations

import gradio as gr

from . import level1 as L
from . import views
from .common import DemoError
from .curves import LEVEL1_COLOURS
from .ui import FINETUNES, friendly, heading, session_state

INTRO = """# Level 1: can a transformer memorize a dozen facts?
Each row is a fact: the model reads the **input** and a `>`, then must type the **output**, one
character at a time. It is a one-layer GPT with 16 numbers per character. Evaluate it, train it
(from the shipped checkpoint or from random weights), and evaluate again."""


def build(demo: gr.Blocks, app: L.Level1) -> None:
    session = session_state()
    gr.Markdown(INTRO)
    card = gr.Markdown()
    with gr.Row():
        with gr.Column(scale=2):
            heading("1", "The facts", "Four characters from A-Z and 0-9 on each side. Edit them, add rows.")
            table = gr.Dataframe(app.default_table(), headers=["input", "output"], datatype="str",
                                 interactive=True, label="Pairs")
        with gr.Column(scale=3):
            heading("2", "Evaluate", "The model's answer to each input, typed greedily.")
            evaluate = gr.Button("Evaluate", variant="primary")
            accuracy = gr.HTML(label="Accuracy")
            results = gr.Dataframe(headers=["input", "expected", "answer", "right?"], interactive=False,
                                   label="Answers")
    heading("3", "Train", "A new model on the facts above, then evaluated again.")
    with gr.Row():
        with gr.Column(scale=2):
            start = gr.Radio([L.FROM_CHECKPOINT, L.FROM_SCRATCH], value=L.FROM_SCRATCH, label="Start from")
            steps = gr.Slider(10, 500, L.STEPS, step=10, label="Steps")
            with gr.Row():
                lr = gr.Number(L.LR, label="Learning rate", step=1e-3)
                seed = gr.Number(0, precision=0, label="Seed (random weights)", minimum=0)
            with gr.Row():
                train = gr.Button("Train", variant="primary", scale=2)
                stop = gr.Button("Stop", variant="stop", scale=1)
        with gr.Column(scale=3):
            status = gr.HTML(views.status("Evaluate first to see what the model knows, then train."), label="Status")
            curve = gr.LinePlot(None, x="step", y="loss", color="series",
                                y_title="loss (bits per character)", label="Training loss",
                                color_map=LEVEL1_COLOURS, colors_in_legend=[])

    def on_open(current):
        try:
            return app.card(), app.session(current)
        except DemoError as err:
            return views.plain(err), current

    demo.load(friendly(on_open), [session], [card, session], api_visibility="private")
    evaluate.click(friendly(app.evaluate), [table, session], [results, accuracy, session], api_name="evaluate")
    train.click(friendly(app.train), [table, start, steps, lr, seed, session],
                [status, curve, results, accuracy, session], api_name="train",
                concurrency_limit=FINETUNES, concurrency_id="finetune", show_progress="full",
                show_progress_on=[status])
    stop.click(app.stop, [session], None, api_name="level1_stop", queue=False)
