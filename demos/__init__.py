"""Gradio demos of tinytorch: the Copilot (load a pretrained character-level GPT, try it,
fine-tune it on your own code for a hundred steps, compare before and after, look inside) and
Level 1 (watch a tiny transformer memorize a dozen facts).

    python -m demos copilot|level1 [--checkpoint PATH_OR_REPO_ID] [--port 7860] [--host 127.0.0.1]

`demos/app.py` holds both as tabs and runs as a Hugging Face Space as it is. Importing this
package is cheap: gradio is imported by the modules that build the UI, and checkpoints load on
first use.
"""
