"""Checkpoints: a folder in the Hugging Face layout, from a local path or a Hub repo id.

    config.json         GPT-2's config keys (as transformers names them), the tokenizer, provenance
    model.safetensors   float32 weights under GPT-2's names; the head is tied to transformer.wte
    README.md           a model card with the Hub's YAML header

Only JSON and safetensors are ever read: a checkpoint from the Hub is untrusted, so nothing in it
is unpickled or executed. Saving writes a temporary sibling folder and renames it into place, so
an interrupted save never leaves a half-written checkpoint where a good one stood.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .nn.gpt import GPT, GPTConfig
from .text import CharTokenizer

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
SHIPPED = "checkpoints/level1, checkpoints/copilot-tiny, checkpoints/copilot"


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or loaded. The message says which file and why."""


# ===================================================================== config.json
def config_dict(model: GPT, tokenizer: CharTokenizer | None = None, provenance: dict | None = None) -> dict:
    """config.json: GPT-2's keys under transformers' names, then the tokenizer and provenance."""
    c = model.config
    values = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": c.vocab_size,
        "n_positions": c.n_positions,
        "n_ctx": c.n_positions,
        "n_embd": c.n_embd,
        "n_layer": c.n_layer,
        "n_head": c.n_head,
        "n_inner": None,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": c.layer_norm_epsilon,
        "resid_pdrop": c.dropout,
        "embd_pdrop": c.dropout,
        "attn_pdrop": 0.0,  # tinytorch applies no dropout to attention weights
        "initializer_range": 0.02,
        "tie_word_embeddings": True,
        # GPT-2's default 50256 lies outside a character vocabulary; there is no special token.
        "bos_token_id": None,
        "eos_token_id": None,
        "dropout": c.dropout,
        "library_name": "tinytorch",
    }
    if tokenizer is not None:
        if tokenizer.vocab_size != c.vocab_size:
            raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is {c.vocab_size}")
        values["tokenizer"] = tokenizer.to_dict()
    if provenance:
        values["provenance"] = provenance
    return values


def _dumps(values: dict) -> str:
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def read_config(folder: Path) -> dict:
    path = Path(folder) / CONFIG_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"{path}: expected a JSON object, got {type(values).__name__}")
    return values


# ===================================================================== saving
def default_model_card(config: dict) -> str:
    provenance = config.get("provenance", {})
    lines = [
        "---", "license: mit", "library_name: tinytorch",
        "tags:", "- tinytorch", "- gpt2", "- character-level", "- text-generation", "---", "",
        "# tinytorch GPT", "",
        f"A character-level GPT-2 ({config['n_layer']} layers, {config['n_head']} heads, "
        f"n_embd {config['n_embd']}, context {config['n_positions']}, vocabulary {config['vocab_size']}), "
        "trained with [tinytorch](https://github.com/), a numpy deep-learning framework.", "",
        "```python", "from tinytorch.nn import GPT", "from tinytorch.text import CharTokenizer",
        "model = GPT.from_pretrained(PATH_OR_REPO_ID)", "tok = CharTokenizer.from_pretrained(PATH_OR_REPO_ID)",
        'print(tok.decode(model.generate(tok.encode("def "), 40, temperature=0)))', "```", "",
        "It loads in transformers too: `GPT2LMHeadModel.from_pretrained(PATH_OR_REPO_ID)`.",
    ]
    if provenance:
        lines += ["", "## Provenance", "", "```json", json.dumps(provenance, indent=2, sort_keys=True), "```"]
    return "\n".join(lines) + "\n"


def write_weights(path: Path, state: dict) -> None:
    from safetensors.numpy import save_file

    # safetensors silently writes wrong bytes for a non-contiguous array: always pass contiguous
    tensors = {name: np.ascontiguousarray(value, dtype=np.float32) for name, value in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def replace_folder(directory, write) -> None:
    """Call write(temporary_folder), then move the folder into place as `directory`.

    Until the rename, `directory` keeps its old content; if `write` fails, it is untouched.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        write(tmp)
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as handle:
                os.fsync(handle.fileno())
        if directory.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            os.replace(directory, old / "previous")
            os.replace(tmp, directory)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_pretrained(model: GPT, directory, tokenizer: CharTokenizer | None = None, provenance: dict | None = None,
                    model_card: str | None = None, extra_files: dict | None = None) -> Path:
    """Write `model` (and its tokenizer) as a checkpoint folder, atomically.

    extra_files: {name: bytes or str} written beside (a loss curve, metrics.jsonl, ...).
    """
    config = config_dict(model, tokenizer, provenance)

    def write(folder: Path):
        (folder / CONFIG_NAME).write_text(_dumps(config), encoding="utf-8")
        write_weights(folder / WEIGHTS_NAME, model.state_dict())
        (folder / CARD_NAME).write_text(model_card or default_model_card(config), encoding="utf-8")
        for name, content in (extra_files or {}).items():
            target = folder / name
            if target.resolve().parent != folder.resolve():
                raise ValueError(f"extra file name {name!r} must be a plain file name")
            (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)

    replace_folder(directory, write)
    return Path(directory)


def save_tokenizer(tokenizer: CharTokenizer, directory) -> None:
    """Put the tokenizer into directory/config.json, keeping whatever else it holds."""
    path = Path(directory) / CONFIG_NAME
    values = read_config(directory) if path.exists() else {}
    values["tokenizer"] = tokenizer.to_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CONFIG_NAME}.tmp")
    tmp.write_text(_dumps(values), encoding="utf-8")
    os.replace(tmp, path)


# ===================================================================== loading
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}(/[A-Za-z0-9][\w.-]{0,95})?$")


def is_repo_id(name: str) -> bool:
    """'org/name' or 'name', as the Hub allows: no paths, no URLs, no '..'."""
    return bool(_REPO_ID.match(name)) and ".." not in name and not name.endswith((".", "-"))


def resolve(path_or_repo_id, revision: str | None = None) -> Path:
    """The local folder of a checkpoint: the path itself, or the Hub download of a repo id."""
    name = str(path_or_repo_id)
    local = Path(name).expanduser()
    if local.is_dir():
        return local
    if local.exists():
        raise CheckpointError(f"{name}: is a file; a checkpoint is a folder holding {CONFIG_NAME} and {WEIGHTS_NAME}")
    if name.startswith((".", "/", "~")) or os.sep in name.strip("/").replace("/", "", 1) or not is_repo_id(name):
        raise CheckpointError(
            f"{name!r}: no such checkpoint folder, and not a Hub repo id (like 'user/model'). "
            f"Shipped checkpoints: {SHIPPED}"
        )
    from .hub import download

    return download(name, revision=revision)


def load_weights(folder: Path) -> dict:
    path = Path(folder) / WEIGHTS_NAME
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        weights = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({err})") from None
    for name, value in weights.items():
        if value.dtype not in (np.float32, np.float64, np.float16):
            raise CheckpointError(f"{path}: tensor {name} has dtype {value.dtype}; expected float32")
    return weights


def load_config(folder: Path) -> GPTConfig:
    values = read_config(folder)
    if values.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{Path(folder) / CONFIG_NAME}: model_type {values['model_type']!r}, expected 'gpt2'")
    try:
        return GPTConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{Path(folder) / CONFIG_NAME}: {err}") from None


def tokenizer_from_folder(folder: Path) -> CharTokenizer:
    values = read_config(folder)
    path = Path(folder) / CONFIG_NAME
    if "tokenizer" not in values:
        raise CheckpointError(f"{path}: holds no 'tokenizer' entry; this checkpoint has no character vocabulary")
    try:
        tokenizer = CharTokenizer.from_dict(values["tokenizer"])
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: bad 'tokenizer' entry ({err})") from None
    if "vocab_size" in values and tokenizer.vocab_size != values["vocab_size"]:
        raise CheckpointError(
            f"{path}: the tokenizer has {tokenizer.vocab_size} ids but vocab_size is {values['vocab_size']}")
    return tokenizer


def load_model(path_or_repo_id, revision: str | None = None) -> GPT:
    """Validate a checkpoint folder (config, tokenizer, every tensor's name and shape), then build it."""
    folder = resolve(path_or_repo_id, revision)
    config = load_config(folder)
    if "tokenizer" in read_config(folder):
        tokenizer_from_folder(folder)  # checks its size against vocab_size
    weights = load_weights(folder)
    weights.pop("lm_head.weight", None)  # transformers may save the tied head; it is wte
    model = GPT(config)
    try:
        model.load_state_dict(weights)
    except ValueError as err:
        raise CheckpointError(f"{Path(folder) / WEIGHTS_NAME}: {err}") from None
    return model.eval()


def load_tokenizer(path_or_repo_id, revision: str | None = None) -> CharTokenizer:
    return tokenizer_from_folder(resolve(path_or_repo_id, revision))


def push_to_hub(model: GPT, repo_id: str, tokenizer: CharTokenizer | None = None, private: bool = False,
                token: str | None = None, commit_message: str = "Upload tinytorch GPT", **save_kwargs) -> str:
    """Save to a temporary folder and publish it as `repo_id`; returns the commit URL."""
    from .hub import push_folder

    with tempfile.TemporaryDirectory() as tmp:
        folder = save_pretrained(model, Path(tmp) / "checkpoint", tokenizer=tokenizer, **save_kwargs)
        return push_folder(folder, repo_id, private=private, token=token, commit_message=commit_message)
