"""A pretrained checkpoint as users work with it: the model and its tokenizer together.

The one module that knows both GPT and CharTokenizer; each class loads and saves itself
(GPT.from_pretrained, CharTokenizer.from_pretrained), and this pairs them.
"""

from __future__ import annotations

from pathlib import Path

from . import hub
from .checkpoint import MAX_PARAMETERS, CheckpointError
from .locate import resolve
from .nn.gpt import GPT
from .text import CharTokenizer


def load(path_or_repo_id, revision: str | None = None,
         max_parameters: int | None = MAX_PARAMETERS) -> tuple[GPT, CharTokenizer]:
    """(model, tokenizer) of one checkpoint: a folder, a shipped name or a Hub repo id, fetched once."""
    folder = resolve(path_or_repo_id, revision, max_parameters, validate=CharTokenizer.check_config)
    return GPT.from_pretrained(folder, max_parameters=max_parameters), CharTokenizer.from_pretrained(folder)


def push_folder(folder, repo_id: str, private: bool = False, token: str | None = None,
                commit_message: str = "Upload tinytorch checkpoint", *, endpoint: str | None = None) -> str:
    """Publish the checkpoint `folder` as model repo `repo_id` (created if needed); returns the
    commit URL. The folder is loaded first, as a user would load it, so a checkpoint that would
    not load is never published. token: by default HF_TOKEN, else the one `hf auth login` saved."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: no such checkpoint folder")
    GPT.from_pretrained(folder)  # checks the tokenizer entry too, when there is one
    return hub.upload_folder(folder, repo_id, private=private, token=token, commit_message=commit_message,
                             endpoint=endpoint)
