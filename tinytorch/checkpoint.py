"""The checkpoint format: a folder in the Hugging Face layout, read, checked and written.

    config.json         GPT-2's config keys (as transformers names them), the tokenizer, provenance
    model.safetensors   float32 weights under GPT-2's names; the head is tied to transformer.wte
    README.md           a model card with the Hub's YAML header

Only JSON and safetensors are ever read: a checkpoint from the Hub is untrusted, so nothing in it
is unpickled or executed. Loading checks the cheap things first and allocates last: config.json's
size, depth and values (each size within SIZE_LIMITS, the parameter count it implies within a
cap), then the weights file's size and header against that config, then every tensor's name,
shape and dtype (from the safetensors header alone), and only then reads the weights, refusing
any that are not finite. Saving writes a temporary
sibling folder and renames it into place, so an interrupted save never leaves a half-written
checkpoint where a good one stood.

This module knows the files and GPTConfig, not the classes: GPT.from_pretrained
(tinytorch.nn.hub_mixin) and CharTokenizer.from_pretrained (tinytorch.text) build themselves from
what it reads, and tinytorch.locate finds the folder a name or Hub repo id means.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np

from .files import replace_folder
from .gpt_config import GPTConfig

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"

# config.json keys a checkpoint must have: GPTConfig's defaults are for experiments, not for
# filling in a file that forgot a size.
REQUIRED_KEYS = ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head")
# Float weights are converted to float32 on load; anything else (ints, bfloat16) is refused.
FLOAT_DTYPES = {"F32", "F16", "F64"}
# Older GPT-2 checkpoints store the causal mask as buffers; tinytorch builds the mask itself, so
# they are skipped unread (whatever their shape or dtype) and the size limit allows them no room.
MASK_BUFFERS = re.compile(r"^transformer\.h\.\d+\.attn\.(bias|masked_bias)$")
TIED_HEAD = "lm_head.weight"  # transformers may write the tied head; it must equal wte

# What a config.json may ask for, checked before anything is allocated or downloaded. Far above
# any model a numpy kit trains (the shipped copilot: 4 layers, n_embd 96, 0.47M parameters), far
# below what would exhaust a machine just to build the model or the table of its tensors.
SIZE_LIMITS = {
    "vocab_size": 1_114_114,  # every Unicode character, plus <pad> and <unk>
    "n_positions": 65_536, "n_embd": 16_384, "n_layer": 1_024, "n_head": 1_024,
}
MAX_PARAMETERS = 1_000_000_000  # 4 GB of float32; callers that serve others pass a lower cap
MAX_CONFIG_BYTES = 1_000_000  # the shipped ones are about 2 KB
MAX_CONFIG_DEPTH = 32  # nesting of JSON objects and lists; provenance nests once per fine-tune


class CheckpointError(ValueError):
    """A checkpoint that cannot be found or loaded. The message says which file and why."""


# ===================================================================== config.json
def config_dict(model, tokenizer_entry: dict | None = None, provenance: dict | None = None) -> dict:
    """config.json of a GPT (`model.config`): GPT-2's keys under transformers' names, then the
    tokenizer's entry (CharTokenizer.to_dict()) and provenance."""
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
    if tokenizer_entry is not None:
        values["tokenizer"] = tokenizer_entry
    if provenance:
        values["provenance"] = provenance
    return values


def _dumps(values: dict) -> str:
    return json.dumps(values, indent=2, sort_keys=True) + "\n"


def read_config(folder: Path, label: str | None = None) -> dict:
    """config.json of `folder` as a dict, refused (CheckpointError) when it is too big, not JSON,
    or nested deeper than MAX_CONFIG_DEPTH. label: how errors name the file (default its path)."""
    path = Path(folder) / CONFIG_NAME
    label = label or path
    if not path.is_file():
        raise CheckpointError(f"{label}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    if (size := path.stat().st_size) > MAX_CONFIG_BYTES:
        raise CheckpointError(f"{label}: {size:,} bytes; a checkpoint's {CONFIG_NAME} is at most "
                              f"{MAX_CONFIG_BYTES:,}")
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:  # ValueError: also an int of over 4300 digits
        raise CheckpointError(f"{label}: not valid JSON ({err})") from None
    except RecursionError:  # the parser recurses once per level of nesting
        values = None
    if values is None or json_depth(values) > MAX_CONFIG_DEPTH:
        raise CheckpointError(f"{label}: nested more than {MAX_CONFIG_DEPTH} levels deep; a checkpoint's "
                              f"{CONFIG_NAME} is a flat record")
    if not isinstance(values, dict):
        raise CheckpointError(f"{label}: expected a JSON object, got {type(values).__name__}")
    return values


def json_depth(value) -> int:
    """Levels of nesting of parsed JSON (a number: 0, [1]: 1), counted without recursion."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > MAX_CONFIG_DEPTH:
            break
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        stack.extend((child, depth + 1) for child in children)
    return deepest


def parameter_count(config: GPTConfig) -> int:
    """Parameters of a GPT of `config` (the head is tied to wte): arithmetic, nothing allocated."""
    V, P, C, L = config.vocab_size, config.n_positions, config.n_embd, config.n_layer
    per_block = 12 * C * C + 13 * C  # c_attn C*3C+3C, c_proj C*C+C, c_fc C*4C+4C, c_proj 4C*C+C, 2 LayerNorms 4C
    return V * C + P * C + L * per_block + 2 * C


def _number(value) -> str:
    """An int for a message, however large (str() of a 5000-digit int raises)."""
    return f"{value:,}" if abs(value) < 10**18 else "more than 10^18"


def shown_value(value) -> str:
    """Any JSON value for a message, short."""
    return _number(value) if isinstance(value, int) and not isinstance(value, bool) else f"{value!r:.40}"


def config_from_dict(values: dict, path, max_parameters: int | None = MAX_PARAMETERS) -> GPTConfig:
    """The GPTConfig of a config.json's values; `path` names the file in errors. Every size must be
    within SIZE_LIMITS and the parameter count they imply within `max_parameters` (None: no cap):
    all arithmetic, so a config asking for a billion layers costs nothing to refuse."""
    if values.get("model_type", "gpt2") != "gpt2":
        raise CheckpointError(f"{path}: model_type {values['model_type']!r:.60}, expected 'gpt2'")
    missing = [key for key in REQUIRED_KEYS if key not in values]
    if missing:
        raise CheckpointError(f"{path}: missing {', '.join(missing)}")
    epsilon = values.get("layer_norm_epsilon", 1e-5)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float)) or not 0 < epsilon < math.inf:
        raise CheckpointError(f"{path}: layer_norm_epsilon must be a positive number, got {epsilon!r:.40}")
    for key in REQUIRED_KEYS:
        value, limit = values[key], SIZE_LIMITS[key]
        if isinstance(value, bool) or not isinstance(value, int):  # JSON true is an int to Python
            raise CheckpointError(f"{path}: {key} must be a whole number, got {value!r:.40}")
        if not 1 <= value <= limit:
            raise CheckpointError(f"{path}: {key} is {_number(value)}; tinytorch loads 1 to {limit:,} "
                                  "(a bound no model of this kit comes near)")
    try:
        config = GPTConfig.from_dict(values)
    except (TypeError, ValueError) as err:
        raise CheckpointError(f"{path}: {err}") from None
    if max_parameters is not None and (count := parameter_count(config)) > max_parameters:
        raise CheckpointError(f"{path}: describes a model of {count:,} parameters; the limit here is "
                              f"{max_parameters:,}")
    return config


def load_config(folder: Path) -> GPTConfig:
    return config_from_dict(read_config(folder), Path(folder) / CONFIG_NAME)


# ===================================================================== saving
def default_model_card(config: dict, title: str = "tinytorch GPT",
                       about: str = "A character-level GPT trained with tinytorch, a numpy deep-learning framework.",
                       folder: str | None = None, prompt: str = "def ", new_tokens: int = 40, tags=(),
                       sections: list[str] | None = None) -> str:
    """README.md of a checkpoint folder: Hub metadata, what the model is, how to load and run it, then
    `sections` (markdown lines; by default the provenance as JSON). pretrain/report.py passes its own
    title, folder, example and sections: one layout for every card."""
    source = f'"{folder}"' if folder else "PATH_OR_REPO_ID"
    specials = " (ids 0 and 1 are `<pad>` and `<unk>`)" if "tokenizer" in config else ""
    lines = [
        "---", "license: mit", "library_name: tinytorch", "pipeline_tag: text-generation",
        "tags:", "- tinytorch", "- gpt2", "- character-level", *(f"- {tag}" for tag in tags), "---", "",
        f"# {title}", "", about, "",
        f"GPT-2 architecture: {config['n_layer']} layers, {config['n_head']} heads, n_embd {config['n_embd']}, "
        f"context {config['n_positions']} characters, vocabulary {config['vocab_size']}{specials}. "
        "Weights in safetensors under GPT-2's names: "
        "`transformers.GPT2LMHeadModel.from_pretrained` loads this folder too.", "",
        "```python", "from tinytorch.nn import GPT", "from tinytorch.text import CharTokenizer",
        f"model = GPT.from_pretrained({source})" + ("  # or a Hub repo id" if folder else ""),
        f"tok = CharTokenizer.from_pretrained({source})",
        f'print(tok.decode(model.generate(tok.encode("{prompt}"), {new_tokens}, temperature=0)))',
        "```", "",
    ]
    if sections is None:
        provenance = config.get("provenance")
        sections = ["## Provenance", "", "```json", json.dumps(provenance, indent=2, sort_keys=True), "```"] if provenance else []
    return "\n".join(lines + sections) + "\n"


def write_weights(path: Path, state: dict, dtype=np.float32) -> None:
    """A safetensors file of `state` in `dtype` (None: each array's own; a training run's float64
    step folders keep theirs, to resume exactly)."""
    from safetensors.numpy import save_file

    # safetensors silently writes wrong bytes for a non-contiguous array: always pass contiguous
    tensors = {name: np.ascontiguousarray(value, dtype=dtype) for name, value in state.items()}
    save_file(tensors, str(path), metadata={"format": "pt"})


def check_replaceable(directory, files=()) -> None:
    """Refuse to replace a folder holding anything a save did not write: a save replaces the
    folder whole, and `save_pretrained(".")` must not take a project with it.

    A save may replace a missing or empty folder, or one that holds nothing but the checkpoint's
    own files (config.json, model.safetensors, README.md and the save's extra `files`) and whose
    config.json is a model's or a tokenizer's: a stray `{}` does not make a folder a checkpoint.
    """
    directory = Path(directory)
    if not directory.exists():
        return
    if not directory.is_dir():
        raise CheckpointError(f"{directory}: exists and is a file, not a checkpoint folder")
    entries = list(directory.iterdir())
    ours = {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, *files}
    foreign = sorted(e.name + "/" if e.is_dir() else e.name for e in entries if e.name not in ours or not e.is_file())
    if foreign:
        raise CheckpointError(
            f"{directory}: is not a checkpoint folder; saving replaces the whole folder and would delete "
            f"{_listed(foreign)}: choose a new or empty folder")
    if entries and not _is_checkpoint_config(directory):
        raise CheckpointError(
            f"{directory}: is not a checkpoint folder (its {CONFIG_NAME} is not a model's); saving replaces "
            "the whole folder: choose a new or empty folder")


def _is_checkpoint_config(directory: Path) -> bool:
    """config.json is a GPT's (GPT-2's size keys) or holds a saved tokenizer."""
    try:
        values = read_config(directory)
    except CheckpointError:
        return False
    return "tokenizer" in values or all(key in values for key in REQUIRED_KEYS)


def save_pretrained(model, directory, tokenizer=None, provenance: dict | None = None,
                    model_card: str | None = None, extra_files: dict | None = None) -> Path:
    """Write `model` (and its tokenizer) as a checkpoint folder, replacing `directory` atomically.

    tokenizer: stored in config.json. When None, a tokenizer already saved in `directory` with the
    model's vocab_size is kept, so `model.save_pretrained(d)` after `tok.save_pretrained(d)` loses nothing.
    extra_files: {name: bytes or str} written beside (a loss curve, metrics.jsonl, ...).
    """
    check_replaceable(directory, files=extra_files or ())
    vocab_size = model.config.vocab_size
    if tokenizer is None:
        entry = saved_tokenizer_entry(Path(directory), vocab_size)
    elif tokenizer.vocab_size != vocab_size:
        raise ValueError(f"tokenizer has {tokenizer.vocab_size} ids but the model's vocab_size is {vocab_size}")
    else:
        entry = tokenizer.to_dict()
    config = config_dict(model, entry, provenance)
    reserved = {CONFIG_NAME, WEIGHTS_NAME, CARD_NAME}

    def write(folder: Path):
        (folder / CONFIG_NAME).write_text(_dumps(config), encoding="utf-8")
        write_weights(folder / WEIGHTS_NAME, model.state_dict())
        (folder / CARD_NAME).write_text(model_card or default_model_card(config), encoding="utf-8")
        for name, content in (extra_files or {}).items():
            target = folder / name
            if name in reserved or target.resolve().parent != folder.resolve():
                raise ValueError(f"extra file name {name!r} must be a plain file name other than {sorted(reserved)}")
            (target.write_bytes if isinstance(content, bytes) else target.write_text)(content)

    replace_folder(directory, write)
    return Path(directory)


def saved_tokenizer_entry(directory: Path, vocab_size: int) -> dict | None:
    """The tokenizer entry already in directory/config.json when it is for `vocab_size` ids
    (CharTokenizer.save_pretrained records its vocab_size beside it), else None."""
    try:
        values = read_config(directory)
    except CheckpointError:  # no folder, no config: nothing to keep
        return None
    entry = values.get("tokenizer")
    return entry if isinstance(entry, dict) and values.get("vocab_size") == vocab_size else None


def write_config(directory, values: dict) -> None:
    """Replace directory/config.json with `values` in one rename (a crash leaves the old or the new)."""
    path = Path(directory) / CONFIG_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{CONFIG_NAME}.tmp")
    tmp.write_text(_dumps(values), encoding="utf-8")
    os.replace(tmp, path)


# ===================================================================== loading
def max_weights_bytes(config: GPTConfig) -> int:
    """The largest model.safetensors a checkpoint of `config` can need: every tensor it has in
    float64, the tied head written out, and a header. Nothing for the optional causal-mask
    buffers: n_positions ** 2 each, they would let a small config ask for gigabytes."""
    return max_header_bytes(config) + 8 * (parameter_count(config) + config.vocab_size * config.n_embd)


def max_header_bytes(config: GPTConfig) -> int:
    """A generous bound on a safetensors header for `config`: ~100 bytes of JSON per tensor."""
    return 65_536 + 256 * (5 + 14 * config.n_layer)


def read_tensor_index(path: Path, config: GPTConfig | None = None) -> dict[str, tuple[str, tuple]]:
    """name -> (safetensors dtype like "F32", shape), from the file's header alone. With `config`,
    the file's size and its header's size are checked against it first (two integers read)."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing; a checkpoint folder holds {CONFIG_NAME} and {WEIGHTS_NAME}")
    if config is not None:
        size, limit = path.stat().st_size, max_weights_bytes(config)
        with open(path, "rb") as handle:
            header = int.from_bytes(handle.read(8), "little")  # safetensors: u64 header length, then JSON
        if size > limit:
            raise CheckpointError(f"{path}: {size:,} bytes, more than the {limit:,} that config.json's model "
                                  f"({parameter_count(config):,} parameters) can need")
        if header > max_header_bytes(config):
            raise CheckpointError(f"{path}: truncated or corrupt safetensors file (a header of {_number(header)} "
                                  f"bytes, more than a model of {config.n_layer} layers needs)")
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="np") as f:
            return {name: (f.get_slice(name).get_dtype(), tuple(f.get_slice(name).get_shape())) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({err})") from None


def expected_shapes(config: GPTConfig) -> dict[str, tuple]:
    """Every tensor a GPT of `config` has, with its shape: GPT-2's names, Linear weights (in, out)."""
    V, P, C = config.vocab_size, config.n_positions, config.n_embd
    shapes = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (P, C)}
    for i in range(config.n_layer):
        for name, shape in [("ln_1.weight", (C,)), ("ln_1.bias", (C,)),
                            ("attn.c_attn.weight", (C, 3 * C)), ("attn.c_attn.bias", (3 * C,)),
                            ("attn.c_proj.weight", (C, C)), ("attn.c_proj.bias", (C,)),
                            ("ln_2.weight", (C,)), ("ln_2.bias", (C,)),
                            ("mlp.c_fc.weight", (C, 4 * C)), ("mlp.c_fc.bias", (4 * C,)),
                            ("mlp.c_proj.weight", (4 * C, C)), ("mlp.c_proj.bias", (C,))]:
            shapes[f"transformer.h.{i}.{name}"] = shape
    shapes["transformer.ln_f.weight"] = shapes["transformer.ln_f.bias"] = (C,)
    return shapes


def _listed(names, limit: int = 4) -> str:
    names = list(names)
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def check_tensors(path: Path, index: dict, config: GPTConfig) -> None:
    """Compare a safetensors header with what `config` needs; one error listing every problem."""
    expected = expected_shapes(config)
    if TIED_HEAD in index:
        expected[TIED_HEAD] = expected["transformer.wte.weight"]
    problems = []
    if missing := [n for n in expected if n not in index and n != TIED_HEAD]:
        problems.append(f"missing tensor {_listed(missing)}")
    if unexpected := [n for n in index if n not in expected and not MASK_BUFFERS.match(n)]:
        problems.append(f"unexpected tensor {_listed(unexpected)}")
    for name, (dtype, shape) in index.items():
        if name in expected and shape != expected[name]:
            problems.append(f"tensor {name} has shape {shape}, config.json needs {expected[name]}")
        if name in expected and dtype not in FLOAT_DTYPES:
            problems.append(f"tensor {name} has dtype {dtype}, expected F32 (float32)")
    if problems:
        raise CheckpointError(f"{path}: " + "; ".join(problems[:6]))


def load_weights(folder, config: GPTConfig | None = None) -> dict:
    """The validated weights of a checkpoint folder, as float32 arrays under GPT-2's names."""
    folder = Path(folder)
    config = config or load_config(folder)
    path = folder / WEIGHTS_NAME
    index = read_tensor_index(path, config)
    check_tensors(path, index, config)
    from safetensors import SafetensorError, safe_open

    try:  # only the tensors the model has: the header gives each one's place, the rest is never read
        with safe_open(str(path), framework="np") as f:
            weights = {name: f.get_tensor(name) for name in index if not MASK_BUFFERS.match(name)}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{path}: truncated or corrupt safetensors file ({err})") from None
    head = weights.pop(TIED_HEAD, None)
    if head is not None and not np.array_equal(head, weights["transformer.wte.weight"]):
        raise CheckpointError(f"{path}: {TIED_HEAD} differs from transformer.wte.weight; tinytorch ties the two")
    for name, value in weights.items():
        if not np.isfinite(value).all():
            bad = value.size - int(np.isfinite(value).sum())
            raise CheckpointError(f"{path}: tensor {name} holds {bad:,} NaN or infinite value(s) of {value.size:,}; "
                                  "the checkpoint is damaged (saved after training diverged?)")
    return {name: value.astype(np.float32, copy=False) for name, value in weights.items()}
