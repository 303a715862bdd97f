"""The Copilot tab: six numbered steps, top to bottom, each button also an API endpoint.

`build` lays out one panel per step (each a function that returns its components), then wires
each step's events; the handlers themselves are demos/copilot.py's, plain functions.
"""

from __future__ import annotations

from types import SimpleNamespace

import gradio as gr

from . import copilot as C
from . import curves, decoding, names, views
from .common import DemoError, check_training_text, examples, read_upload
from .heldout import split_text
from .ui import FINETUNES, friendly, heading, keep_spaces, session_state

OWN = "my own code (paste it below or upload a file)"
PROMPT = "import os\n\n\ndef read_lines(path):\n    "
PROMPTS = [PROMPT, "class Stack:\n    def __init__(self):\n        self.", "for i in range(",
           "class Point:\n    def __repr__(self):\n        return ", "if __name__ == '__main__':\n    "]
COMPARE_FIRST = "Fine-tune first, then compare."
CHANGED = "The model's weights changed: press <b>Generate</b> to try the model you have now."
FRESH = "Press Start: 100 steps take a few seconds."
INTRO = """# A Copilot you can fine-tune in class
A character-level GPT-2, written from scratch in numpy with tinytorch and pretrained on Python
code. Try it, **fine-tune it on your own code for a hundred steps**, and watch it pick up your
helper names and habits."""


def build(demo: gr.Blocks, app: C.Copilot) -> None:
    """Lay out the Copilot inside the current Blocks context and wire its events."""
    session = session_state()
    texts = examples()
    first = next(iter(texts), None)
    gr.Markdown(INTRO)
    model = choose_panel(app)  # 1
    trying = try_panel()  # 2
    tuning = finetune_panel(texts, first)  # 3
    comparing = compare_panel(texts.get(first, ""))  # 4
    keeping = keep_panel()  # 5
    inside = inside_panel()  # 6

    # Each step's events, in page order. `results` no longer describe the session's model once its
    # weights change: Load, Start and Reset clear them.
    results = [comparing.comparison, comparing.details, keeping.saved, inside.attention, inside.probabilities,
               trying.written, keeping.download]
    sampling = [trying.max_new, trying.temperature, trying.top_k, trying.top_p, trying.seed, trying.mode]
    wire_choose(demo, app, session, model, tuning, inside, results)
    trying.generate.click(friendly(app.generate), [trying.prompt, *sampling, session],
                          [trying.written, trying.details, session], api_name="generate")
    wire_finetune(app, session, texts, tuning, comparing.prompts, results, keeping.download)
    comparing.compare.click(friendly(app.compare), [comparing.prompts, *sampling, session],
                            [comparing.comparison, comparing.details], api_name="compare")
    wire_keep(app, session, keeping, tuning, results)
    inside.look.click(friendly(app.attention), [trying.prompt, inside.layer, inside.head, session],
                      [inside.attention, inside.probabilities], api_name="attention")


# ====================================================================== the panels, top to bottom
def choose_panel(app: C.Copilot) -> SimpleNamespace:
    heading("1", "Choose a model", "A shipped checkpoint, or a Hub repo id like `user/model`.")
    with gr.Row():
        with gr.Column(scale=2, min_width=260):
            source = gr.Dropdown(app.checkpoints, value=app.default, allow_custom_value=True, label="Model",
                                 show_label=False, container=False)
            load = gr.Button("Load")
        with gr.Column(scale=5):
            card = gr.Markdown("_Loading the model…_", label="Model")
    return SimpleNamespace(source=source, load=load, card=card)


def try_panel() -> SimpleNamespace:
    heading("2", "Try it", "Type the start of some code; the model completes the line, as a code editor "
                           "does, and lists its top suggestions.")
    with gr.Row():
        with gr.Column(scale=1):
            prompt = keep_spaces(gr.Code(language="python", label="Prompt", lines=6, max_lines=14))
            prompt.value = PROMPT  # set after keep_spaces: the constructor strips its value
            gr.Examples([[p] for p in PROMPTS], [prompt], label="Or start from one of these")
            mode = gr.Radio([(label, key) for key, label in decoding.MODES.items()], value=C.MODE, show_label=False,
                            info="Line and block: a beam search that ranks whole completions. Sample: one "
                                 "character at a time, with the settings below.")
            with gr.Accordion("Sampling and length", open=False):
                with gr.Row():
                    max_new = gr.Slider(1, 400, C.MAX_NEW, step=1, label="Max new characters")
                    seed = gr.Number(C.SEED, precision=0, label="Seed", minimum=0,
                                     placeholder="a new one each press", info="Sample mode; empty: a new seed each time")
                with gr.Row():
                    temperature = gr.Slider(0, 2, C.TEMPERATURE, step=0.05, label="Temperature",
                                            info="Sample mode; 0 = always the most likely character")
                    top_k = gr.Slider(0, 100, C.TOP_K, step=1, label="Top-k", info="0 = off")
                    top_p = gr.Slider(0.05, 1, C.TOP_P, step=0.05, label="Top-p", info="1 = off")
            generate = gr.Button("Generate", variant="primary")
        with gr.Column(scale=1):
            written = gr.HTML(views.status("Press <b>Generate</b>: the model's best suggestion will show in "
                                           "green after your prompt, and the next ones below it."), label="Completion")
            with gr.Accordion("What the API returns", open=False):
                details = gr.JSON(label="Details")
    return SimpleNamespace(prompt=prompt, mode=mode, max_new=max_new, seed=seed, temperature=temperature,
                           top_k=top_k, top_p=top_p, generate=generate, written=written, details=details)


def finetune_panel(texts: dict, first: str | None) -> SimpleNamespace:
    heading("3", "Fine-tune it on your code",
            "Pick an example (each has its own helper names and docstring style), paste your code, or upload a file.")
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                example = gr.Dropdown(list(texts) + [OWN], value=first or OWN, label="Training example",
                                      show_label=False, scale=3, container=False)
                upload = gr.UploadButton("Upload .py / .txt", file_types=[".py", ".txt"], scale=1, size="md",
                                         min_width=160)
            text = gr.Code(texts.get(first, ""), language="python", label="Training text (editable)",
                           lines=16, max_lines=16)
        with gr.Column(scale=2):
            with gr.Row():
                steps = gr.Slider(*C.STEPS_RANGE, C.STEPS, step=10, label="Steps")
                batch = gr.Slider(*C.BATCH_RANGE, C.BATCH, step=1, label="Batch size")
            lr = gr.Number(None, label="Learning rate", placeholder="the model's default", step=1e-5,
                           info=f"{C.LR_RANGE[0]:g} to {C.LR_RANGE[1]:g}; too high and it memorizes, or diverges")
            with gr.Row():
                held_out = gr.Slider(*C.PERCENT_RANGE, C.HELD_OUT_PERCENT, step=5, label="Held out (% of lines)",
                                     info="The end of the text, never trained on: where learning is measured")
                keep_best = gr.Checkbox(True, label="Keep the best held-out step",
                                        info="Early stopping; untick to watch it memorize")
            split = gr.Markdown(split_note(texts.get(first, ""), C.HELD_OUT_PERCENT))
            with gr.Row():
                start = gr.Button("Start fine-tuning", variant="primary", scale=2)
                stop = gr.Button("Stop", variant="stop", scale=1)
            status = gr.HTML(views.status(FRESH), label="Status")
            # No legend (gradio 6.31 clips it at the bottom): the label says which line is which.
            curve = gr.LinePlot(None, x="step", y="loss", color="series", colors_in_legend=[],
                                color_map=curves.COPILOT_COLOURS,
                                x_title="step", y_title="loss (bits per character)",
                                label="Loss: training batches (light green), their running average (green), the "
                                      "held-out part (blue), the step kept (orange)")
    return SimpleNamespace(example=example, upload=upload, text=text, steps=steps, batch=batch, lr=lr,
                           held_out=held_out, keep_best=keep_best, split=split, start=start, stop=stop,
                           status=status, curve=curve)


def split_note(text: str, percent) -> str:
    """Under the held-out slider: which lines train and which are held out."""
    try:
        percent = float(percent)
    except (TypeError, ValueError):
        return ""
    return f"_{split_text(text or '', percent).describe()}_" if (text or "").strip() else ""


def compare_panel(first_text: str) -> SimpleNamespace:
    heading("4", "Compare before and after",
            "The same prompts, decoding (step 2's) and settings for the pretrained model and yours. Prompts are "
            "separated by lines holding only `---`; they start out drawn from the training text.")
    prompts = keep_spaces(gr.Code(language="python", label="Prompts", lines=6, max_lines=12))
    # set after keep_spaces: the constructor strips its value
    prompts.value = names.format_prompts(names.default_prompts(first_text))
    compare = gr.Button("Compare", variant="primary")
    comparison = gr.HTML(views.status(COMPARE_FIRST), label="Comparison")
    with gr.Accordion("What the API returns", open=False):
        details = gr.JSON(label="Details")
    return SimpleNamespace(prompts=prompts, compare=compare, comparison=comparison, details=details)


def keep_panel() -> SimpleNamespace:
    heading("5", "Keep it or start over",
            f"The zip holds one folder, `{C.ZIPPED}/`, a checkpoint like the shipped ones. Unzip it, then "
            f"`GPT.from_pretrained(\"{C.ZIPPED}\")`; the folder you unzipped into loads too.")
    with gr.Row():
        with gr.Column(scale=1):
            # off until there is a fine-tuned model: no "nothing to download" toast to outlive it
            download = gr.Button("Save my fine-tuned model (.zip)", interactive=False)
            reset = gr.Button("Reset to the pretrained weights", variant="stop")
        saved = gr.File(label="Fine-tuned checkpoint", scale=2, visible=False)
    return SimpleNamespace(download=download, reset=reset, saved=saved)


def inside_panel() -> SimpleNamespace:
    heading("6", "Look inside", "What the model attends to over the prompt of step 2, and what it "
                                "would type next.")
    with gr.Row():
        layer = gr.Slider(0, 3, 0, step=1, label="Layer")
        head = gr.Slider(0, 3, 0, step=1, label="Head")
        look = gr.Button("Show attention", variant="primary", scale=0, min_width=180)
    with gr.Row():
        attention = gr.HTML(label="Attention map", scale=3)
        probabilities = gr.Label(label="Next character", num_top_classes=8, scale=2)
    return SimpleNamespace(layer=layer, head=head, look=look, attention=attention, probabilities=probabilities)


# ====================================================================== the events of each step
def clear_results():
    """What no longer describes the session's model: the comparison, the zip, the attention map."""
    return (views.status(COMPARE_FIRST), None, gr.File(value=None, visible=False), "", None,
            views.status(CHANGED), gr.Button(interactive=False))


def wire_choose(demo, app, session, model, tuning, inside, results) -> None:
    """Page load and Load: the card, the model's name, its shape for step 6's sliders, its learning rate."""

    def on_open(current):
        """Page load, or after a Load (done or failed): the card and name of the model the session
        really has, its shape for the sliders, its learning rate."""
        try:
            current = app.session(current)
        except DemoError as err:
            return f"**{views.plain(err)}**", current, gr.Slider(), gr.Slider(), gr.Number(), gr.Dropdown()
        config = current.base.model.config
        return (app.card(current), current, gr.Slider(maximum=config.n_layer - 1, value=0),
                gr.Slider(maximum=config.n_head - 1, value=0), C.recommended_lr(config), current.base.source)

    opened = [model.card, session, inside.layer, inside.head, tuning.lr, model.source]
    demo.load(friendly(on_open), [session], opened, api_visibility="private")
    loading = model.load.click(friendly(app.load), [model.source, session], [model.card, session], api_name="load")
    # After a failed Load too, the dropdown names the model the session really has (gradio 6.31's
    # .then() does not run after a failure, so: one listener for each outcome).
    for outcome in (loading.success, loading.failure):
        outcome(friendly(on_open), [session], opened, api_visibility="private")
    loading.success(lambda: (views.status(FRESH), curves.empty_frame(), *clear_results()), None,
                    [tuning.status, tuning.curve, *results], api_visibility="private")


def wire_finetune(app, session, texts, tuning, prompts, results, download) -> None:
    """Choosing or uploading a training text (which also redraws step 4's prompts), Start and Stop."""

    def choose_example(name):
        if name not in texts:
            return gr.Code(), gr.Code()
        return texts[name], names.format_prompts(names.default_prompts(texts[name]))

    tuning.example.change(choose_example, [tuning.example], [tuning.text, prompts], api_visibility="private")

    def uploaded(path, current):
        body = read_upload(path)
        tokenizer = app.session(current).base.tokenizer
        clean, note = check_training_text(body, tokenizer)
        if note:
            gr.Warning(views.plain(note))  # the toast renders HTML
        return OWN, clean, names.format_prompts(names.default_prompts(clean))

    # Not a button, but callable (undocumented) so that tests can send a file the way a browser does.
    tuning.upload.upload(friendly(uploaded), [tuning.upload, session], [tuning.example, tuning.text, prompts],
                         api_name="upload", api_visibility="undocumented")

    # The results describe the old weights: cleared at once, before the fine-tune queues.
    tuning.start.click(clear_results, None, results, api_visibility="private", queue=False)
    for changed in (tuning.text.change, tuning.held_out.change):
        changed(split_note, [tuning.text, tuning.held_out], [tuning.split], api_visibility="private", queue=False)
    tuning.start.click(friendly(app.finetune), [tuning.text, tuning.steps, tuning.lr, tuning.batch, tuning.held_out,
                                                tuning.keep_best, session],
                       [tuning.status, tuning.curve, session], api_name="finetune", concurrency_limit=FINETUNES,
                       concurrency_id="finetune", show_progress="full",
                       show_progress_on=[tuning.status]  # the queue place shows there
                       ).success(lambda current: gr.Button(interactive=current is not None and current.model is not None),
                                 [session], [download], api_visibility="private")
    tuning.stop.click(app.stop, [session], None, api_name="stop", queue=False)


def wire_keep(app, session, keeping, tuning, results) -> None:
    """Reset (which clears the results) and the zip (shown once it is made)."""
    keeping.reset.click(friendly(app.reset), [session], [tuning.status, tuning.curve, session],
                        api_name="reset").success(clear_results, None, results, api_visibility="private")
    keeping.download.click(friendly(app.download), [session], [keeping.saved], api_name="download").success(
        lambda: gr.File(visible=True), None, [keeping.saved], api_visibility="private")
