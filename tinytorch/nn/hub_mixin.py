"""A model as a checkpoint folder: from_pretrained, save_pretrained and push_to_hub, the methods
transformers' models have, for any Module built from a GPTConfig (GPT mixes this in).

The format lives in tinytorch.checkpoint, finding a folder in tinytorch.locate and the Hub in
tinytorch.hub; this class only puts a model together from them (and takes one apart), so those
modules never need to know the model.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from .. import checkpoint, hub
from ..checkpoint import CONFIG_NAME, MAX_PARAMETERS, WEIGHTS_NAME, CheckpointError
from ..locate import resolve
from ..tensor import no_grad
from ..text import CharTokenizer


class ModelHubMixin:
    @classmethod
    def from_pretrained(cls, path_or_repo_id, revision: str | None = None,
                        max_parameters: int | None = MAX_PARAMETERS):
        """Validate a checkpoint folder (config and its bounds, tokenizer, every tensor's name, shape,
        dtype and finiteness), then build it, in eval mode. path_or_repo_id: a folder, a shipped
        name or a Hub repo id. max_parameters: refuse bigger models (None: no cap)."""
        # a checkpoint ships whole or not at all: its tokenizer entry must load too
        folder = resolve(path_or_repo_id, revision, max_parameters, validate=CharTokenizer.check_config)
        values = checkpoint.read_config(folder)
        config = checkpoint.config_from_dict(values, folder / CONFIG_NAME, max_parameters)
        CharTokenizer.check_config(values, folder / CONFIG_NAME)
        weights = checkpoint.load_weights(folder, config)
        model = cls(config)
        try:
            model.load_state_dict(weights)
        except ValueError as err:  # check_tensors has seen to this already; kept as a second guard
            raise CheckpointError(f"{folder / WEIGHTS_NAME}: {err}") from None
        check_outputs_finite(model, folder / WEIGHTS_NAME)
        return model.eval()

    def save_pretrained(self, directory, tokenizer: CharTokenizer | None = None, provenance: dict | None = None,
                        model_card: str | None = None, extra_files: dict | None = None) -> Path:
        """Write this model (and its tokenizer) as a checkpoint folder; see checkpoint.save_pretrained."""
        return checkpoint.save_pretrained(self, directory, tokenizer=tokenizer, provenance=provenance,
                                          model_card=model_card, extra_files=extra_files)

    def push_to_hub(self, repo_id: str, tokenizer: CharTokenizer | None = None, private: bool = False,
                    token: str | None = None, commit_message: str = "Upload tinytorch GPT",
                    endpoint: str | None = None, **save_options) -> str:
        """Save to a temporary folder, load it back as a user would (so a model that would not load
        is never published), and publish it as `repo_id`; returns the commit URL."""
        with tempfile.TemporaryDirectory() as tmp:
            folder = self.save_pretrained(Path(tmp) / "checkpoint", tokenizer=tokenizer, **save_options)
            type(self).from_pretrained(folder)
            return hub.upload_folder(folder, repo_id, private=private, token=token, commit_message=commit_message,
                                     endpoint=endpoint)


def check_outputs_finite(model, path) -> None:
    """One forward pass over a few tokens: finite weights can still be so large that the logits
    overflow, and then generation writes nothing and evaluation reports NaN."""
    T = min(8, model.config.n_positions)
    ids = np.arange(T).reshape(1, T) % model.config.vocab_size  # (1, T)
    with no_grad():
        logits = model.eval()(ids).data  # (1, T, V)
    if not np.isfinite(logits).all():
        raise CheckpointError(f"{path}: the weights are finite but so large that the model's outputs overflow "
                              "(NaN or infinite logits); the checkpoint is damaged")
