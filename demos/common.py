"""What both demos share: where checkpoints live, loading them once, the compute lock, and the
checks that turn bad input into a clear message (DemoError) instead of a traceback.

No gradio here: the handlers built on this are plain functions that tests call directly.
"""

from __future__ import annotations

import atexit
import logging
import math
import os
import shutil
import tempfile
import threading
import weakref
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path

from tinytorch import checkpoint, locate, pretrained
from tinytorch.nn import GPT
from tinytorch.shipped import SHIPPED_DIR
from tinytorch.text import CharTokenizer

from . import settings
from .work import check_request_size

CHECKPOINTS = SHIPPED_DIR
EXAMPLES = Path(__file__).resolve().parent / "examples"

MAX_TEXT_CHARS = 100_000  # training text, pasted or uploaded: a few files of your own code
MAX_UPLOAD_BYTES = 200_000  # read no more than this from an upload (text is at most 100k chars)
MAX_PROMPT_CHARS = 10_000  # only the last n_positions characters reach the model anyway
# The largest model a student may load from the Hub (config.json is checked before the weights
# are fetched), and how many such models may be in memory at once. The shipped copilot has 0.47M
# parameters. At 5M (20 MB of float32), 4 distinct Hub models take 80 MB; sessions' fine-tuned
# copies have a budget of their own (demos/copies.py), and what one request may allocate is
# bounded too (demos/work.py).
MAX_PARAMETERS = settings.number("TINYTORCH_DEMO_MAX_PARAMETERS", 5_000_000, 1, whole=True)
MAX_HUB_MODELS = settings.number("TINYTORCH_DEMO_HUB_MODELS", 4, 1, 1000, whole=True)


class DemoError(ValueError):
    """Bad input or an unavailable model: the message is shown to the student as it is."""


# ===================================================================== the compute lock
class FairLock:
    """A first-come, first-served lock around every forward/backward pass of the demos, which up
    to `slots` threads may hold at once: one per core, since each pass runs on one thread.

    Why a lock: a classroom server's cores are few, and more matmul-heavy threads than cores only
    fight over them. Why first-come: a fine-tune re-takes the lock after every step, and a plain
    lock would let it starve the generations waiting behind it; here each step waits its turn,
    so a generation waits at most one step of each running fine-tune.
    """

    def __init__(self, slots: int = 1):
        self.slots = max(1, int(slots))
        self._condition = threading.Condition()
        self._queue: deque = deque()
        self._holders: dict[int, int] = {}  # thread -> how many times it holds the lock (re-entrant)

    def __enter__(self):
        me = threading.get_ident()
        with self._condition:
            if me in self._holders:  # re-entrant: a handler may call a helper that locks too
                self._holders[me] += 1
                return self
            ticket = object()
            self._queue.append(ticket)
            while len(self._holders) >= self.slots or self._queue[0] is not ticket:
                self._condition.wait()
            self._queue.popleft()
            self._holders[me] = 1
            self._condition.notify_all()  # the next in line may take another free slot
            return self

    def __exit__(self, *exc):
        me = threading.get_ident()
        with self._condition:
            self._holders[me] -= 1
            if self._holders[me] == 0:
                del self._holders[me]
                self._condition.notify_all()


# Passes at once: the cores (TINYTORCH_DEMO_COMPUTE to set it); the demos run numpy on one thread each.
COMPUTE_SLOTS = settings.per_core("TINYTORCH_DEMO_COMPUTE")
COMPUTE = FairLock(COMPUTE_SLOTS)
INIT = threading.Lock()  # a new model's initialization draws from tinytorch's one global generator


# ===================================================================== checkpoints
@dataclass
class Loaded:
    """A checkpoint loaded once and shared, read-only, by every session that uses it."""

    source: str  # what the student chose: a shipped name, a folder or a Hub repo id
    location: str  # the folder or repo id it was loaded from
    model: GPT
    tokenizer: CharTokenizer
    config: dict  # config.json as it is (provenance included)
    files: dict = field(default_factory=dict)  # small text files beside it (tasks.txt)


def shipped(name: str) -> Path:
    return CHECKPOINTS / name


class ModelStore:
    """Checkpoints by source, loaded on first use and shared by every session that uses them.

    The checkpoints the app offers stay loaded (the few most recent). One a student named (a Hub
    repo id) lives only while some session holds it: when its students leave, its memory goes.
    Sessions never modify these models: a session that fine-tunes trains its own copy.
    max_parameters: the largest model a student may load (the offered ones are the instructor's);
    max_hub_models: how many different ones may be in memory (or loading) at once;
    max_request_bytes: the most one request on a student's model may allocate (demos/work.py;
    None: its MAX_REQUEST_MB).
    """

    def __init__(self, capacity: int = 4, extra_files=("tasks.txt",), max_parameters: int = MAX_PARAMETERS,
                 max_hub_models: int = MAX_HUB_MODELS, max_request_bytes: float | None = None):
        self.capacity = capacity
        self.extra_files = extra_files
        self.max_parameters = max_parameters
        self.max_hub_models = max_hub_models
        self.max_request_bytes = max_request_bytes
        self._models: OrderedDict[str, Loaded] = OrderedDict()  # offered: kept
        self._borrowed: weakref.WeakValueDictionary[str, Loaded] = weakref.WeakValueDictionary()  # held by sessions
        self._lock = threading.Lock()  # guards the dicts, never held while loading
        self._loading: dict[str, threading.Lock] = {}  # one lock per checkpoint being loaded

    def get(self, source: str, offered=()) -> Loaded:
        """The loaded checkpoint; `offered`: the names and folders the app lists (see check_source).

        A slow load (a Hub download can take half a minute to time out) holds up only the
        sessions that asked for that checkpoint, not everyone else's."""
        location = check_source(source, offered)
        offer = source.strip() in offered
        key = location if offer else "hub:" + location  # a student's name never meets a folder's
        with self._lock:
            if (found := self._find(key)) is not None:
                return found
            held = set(self._borrowed.keys()) | {k for k in self._loading if k.startswith("hub:")}
            if not offer and key not in held and len(held) >= self.max_hub_models:
                raise DemoError(f"Students have {len(held)} other Hub models loaded, as many as this server holds "
                                "at once; use one of those or a shipped checkpoint, or try again when some "
                                "students have left.")
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if (found := self._find(key)) is not None:  # loaded by whoever held `loading` before us
                    return found
            try:
                source = source.strip()
                loaded = self._load(source, location) if offer else self._load_hub(source, location)
                with self._lock:
                    if offer:
                        self._models[key] = loaded
                        while len(self._models) > self.capacity:
                            self._models.popitem(last=False)
                    else:
                        self._borrowed[key] = loaded
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            return loaded

    def _find(self, key: str) -> Loaded | None:
        if key in self._models:
            self._models.move_to_end(key)
            return self._models[key]
        return self._borrowed.get(key)

    def _load(self, source: str, location: str) -> Loaded:
        """An offered checkpoint: a folder, or the instructor's repo id; any size."""
        return self._open(source, location, lambda: locate.resolve(location, validate=CharTokenizer.check_config), None)

    def _load_hub(self, source: str, repo_id: str) -> Loaded:
        """What a student typed: a Hub repo (never a path on this machine), at most max_parameters,
        and no request on it bigger than max_request_bytes: both checked on config.json, before
        the weights are fetched."""
        from tinytorch.hub import download

        cap = self.max_parameters

        def validate(values: dict, label) -> None:
            CharTokenizer.check_config(values, label)
            check_request_size(checkpoint.config_from_dict(values, label, cap), label, self.max_request_bytes)

        return self._open(source, repo_id, lambda: download(repo_id, max_parameters=cap, validate=validate), cap)

    def _open(self, source: str, location: str, fetch, cap) -> Loaded:
        """Load the folder fetch() returns. Errors name what was asked for, never this machine's
        folders (the checkpoint's, the Hub cache's)."""
        shown, folder = display_name(source), None
        try:
            folder = fetch()
            model, tokenizer = pretrained.load(folder, max_parameters=cap)
            config = checkpoint.read_config(folder)
        except checkpoint.CheckpointError as err:
            raise DemoError(f"Could not load {shown!r}: {private(str(err), shown, folder, location)}") from None
        except OSError as err:  # permissions, a full disk: the reason, not the file's path
            raise DemoError(f"Could not load {shown!r}: {err.strerror or type(err).__name__}") from None
        except Exception as err:  # noqa: BLE001 - a client library's own error: its text may hold paths
            logging.getLogger("demos").error("loading %s failed", source, exc_info=err)
            raise DemoError(f"Could not load {shown!r} ({type(err).__name__}; the server log has the "
                            "details).") from None
        files = {}
        for name in self.extra_files:
            path = Path(folder) / name
            if path.is_file() and path.stat().st_size < 100_000:
                files[name] = path.read_text(encoding="utf-8", errors="replace")
        return Loaded(source, location, model.eval(), tokenizer, config, files)


def private(message: str, shown: str, *paths) -> str:
    """A loader's message as a student may see it: this machine's folders (the checkpoint's, the
    Hub cache's) named as `shown`, and the Hub's address (HF_ENDPOINT, maybe a private mirror) left out."""
    for path in sorted({str(p) for p in paths} - {"None", shown}, key=len, reverse=True):
        message = message.replace(path, shown)
    endpoint = os.environ.get("HF_ENDPOINT", "").rstrip("/")
    if endpoint:
        message = message.replace(f" ({endpoint})", "").replace(endpoint, "the Hub")
    return message


def spread(items: list, limit: int) -> list:
    """Up to `limit` of `items`, spread evenly over them: always the same ones for the same list."""
    if len(items) <= limit:
        return items
    step = len(items) / limit
    return [items[int(i * step)] for i in range(limit)]


def display_name(source: str) -> str:
    """How messages name a checkpoint: as given, but a folder of this project relative to it
    (never the server's absolute path for a default the student did not type)."""
    path = Path(source)
    if path.is_absolute():
        try:
            return str(path.relative_to(CHECKPOINTS.parent))
        except ValueError:
            return path.name
    return source


def check_source(source, offered=()) -> str:
    """Where to load `source` from: a checkpoint this app offers (a shipped name, or a folder the
    instructor passed with --checkpoint) or a Hub repo id. Any other local path is refused: a name
    typed into a web page never becomes a path on this machine."""
    if not isinstance(source, str) or not source.strip():
        raise DemoError("Choose a checkpoint: a shipped one, or a Hub repo id like 'user/model'.")
    source = source.strip()
    if len(source) > 200:
        raise DemoError("That is too long to be a checkpoint name or a Hub repo id.")
    if source in offered:  # trusted: the shipped names, or what the instructor passed on the command line
        for folder in (shipped(source), Path(source).expanduser()):
            if folder.is_dir():
                return str(folder)
        if "/" not in source:
            raise DemoError(f"The checkpoint {source!r} is not here (checkpoints/{source} is missing). Create it "
                            f"with `python -m pretrain {source}`, or load a Hub repo id.")
        if not locate.is_repo_id(source):
            raise DemoError(f"{display_name(source)!r}: no such checkpoint folder.")
        return source
    # Anything else is a Hub repo id or nothing: whether such a path exists here is never looked
    # at, so the answer cannot tell a student what this machine holds.
    if not locate.is_repo_id(source):
        choices = ", ".join(repr(display_name(o)) for o in offered) or "none"
        raise DemoError(f"{source!r} is not a Hub repo id (like 'user/model': letters, digits, '-', '_', "
                        f"'.', one '/') nor one of the checkpoints offered here ({choices}). "
                        "Other folders on this machine open with `python -m demos --checkpoint FOLDER`.")
    return source


def clone(model: GPT) -> GPT:
    """A session's own copy of a shared model, to fine-tune without touching the original."""
    with INIT:  # GPT() draws its init from the global generator; keep it to one thread
        copy = GPT(model.config)
    with COMPUTE:
        copy.load_state_dict(model.state_dict())
    return copy.eval()


# ===================================================================== input checks
def as_int(value, name: str, low: int, high: int) -> int:
    """An integer in [low, high], from what a slider or an API call sends (int, float, str)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise DemoError(f"{name} must be a whole number from {low} to {high}; got {value!r}.") from None
    if not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise DemoError(f"{name} must be a whole number from {low} to {high}; got {value!r}.")
    return int(number)


def as_float(value, name: str, low: float, high: float, hint: str = "") -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or not low <= number <= high:
        raise DemoError(f"{name} must be a number from {low:g} to {high:g}; got {value!r}.{hint}")
    return number


def show_chars(chars) -> str:
    """Characters as a student can read them: '\\x00', '\\u00e9', '😀' all visible."""
    chars = list(chars)
    shown = ", ".join(repr(c) for c in chars[:8])
    return shown + (f" and {len(chars) - 8} more" if len(chars) > 8 else "")


def check_prompt(text, tokenizer: CharTokenizer) -> str:
    """The prompt, normalized, or a DemoError saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip():
        raise DemoError("The prompt is empty: type the start of some Python code, e.g. 'def '.")
    text = normalized(text, tokenizer, MAX_PROMPT_CHARS, "The prompt", "(the model only reads the last few anyway)")
    unknown = tokenizer.unknown_chars(text)
    if unknown:
        raise DemoError(f"The prompt has {len(unknown)} character(s) this model has never seen: "
                        f"{show_chars(unknown)}. It knows printable ASCII and newlines; "
                        "remove or replace them.")
    return text


def normalized(text: str, tokenizer: CharTokenizer, limit: int, what: str, why: str) -> str:
    """The text as the model will see it (tabs expanded, at most tab_size times longer), refused
    when that is over `limit` characters. Text that could not fit whatever normalization does
    (it only expands, but "\r\n" becomes one character) is refused before any work."""
    if len(text) <= 2 * limit:
        text = tokenizer.normalize(text)
    if len(text) > limit:
        raise DemoError(f"{what} has {len(text):,} characters (tabs counted as {tokenizer.tab_size} spaces); "
                        f"the limit is {limit:,} {why}.")
    return text


def check_training_text(text, tokenizer: CharTokenizer, min_chars: int = 64) -> tuple[str, str]:
    """(text to train on, a note for the student). Characters outside the vocabulary are dropped,
    with a note; text that is mostly such characters (binary, another alphabet) is refused."""
    if not isinstance(text, str) or not text.strip():
        raise DemoError("The training text is empty: choose an example, paste some code or upload a .py file.")
    text = normalized(text, tokenizer, MAX_TEXT_CHARS, "The training text",
                      "(use one or two of your files, not a whole project)")
    if "\x00" in text:
        raise DemoError("The training text contains NUL bytes: it looks like a binary file, not code.")
    unknown = set(tokenizer.unknown_chars(text))
    note = ""
    if unknown:
        dropped = sum(c in unknown for c in text)
        if dropped > 0.1 * len(text):
            raise DemoError(f"{dropped:,} of the {len(text):,} characters are outside the model's alphabet "
                            f"({show_chars(sorted(unknown))}): this does not look like Python source.")
        text = "".join(c for c in text if c not in unknown)
        note = f"Left out {dropped} character(s) the model does not know: {show_chars(sorted(unknown))}."
    # one ending, whatever the editor or client sent: a browser's code box and an API call give the
    # same text, so the same batches and the same fine-tune
    text = text.rstrip() + "\n"
    if len(text) < min_chars:
        raise DemoError(f"The training text is only {len(text)} characters; give it at least {min_chars} "
                        "(a function or two).")
    return text, note


def read_upload(path, max_bytes: int = MAX_UPLOAD_BYTES) -> str:
    """The text of an uploaded file: size-capped, read as UTF-8 text, never executed or kept."""
    if not path:
        raise DemoError("No file received.")
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise DemoError(f"{path.name} is {size / 1000:,.0f} KB; upload at most {max_bytes // 1000} KB "
                            "of code (one or two files).")
        with open(path, "rb") as handle:
            data = handle.read(max_bytes + 1)
    except OSError as err:
        raise DemoError(f"Could not read the upload: {err.strerror or err}") from None
    if b"\x00" in data:
        raise DemoError(f"{path.name} is a binary file; upload Python source (.py) or plain text (.txt).")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DemoError(f"{path.name} is not UTF-8 text; upload Python source (.py) or plain text (.txt).") from None


_TEMP_FOLDERS: set[str] = set()  # a session's files; removed with it, or at exit at the latest


def temp_folder() -> Path:
    """A new private folder for one session's files. close_temp_folder removes it; whatever is
    left when the process ends (Ctrl-C included: `python -m demos` exits normally) goes at exit."""
    folder = tempfile.mkdtemp(prefix="tinytorch-demo-")
    _TEMP_FOLDERS.add(folder)
    return Path(folder)


def close_temp_folder(folder) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    _TEMP_FOLDERS.discard(str(folder))


@atexit.register
def close_temp_folders() -> None:
    for folder in list(_TEMP_FOLDERS):
        close_temp_folder(folder)


def examples() -> dict[str, str]:
    """The shipped training texts: {file name: text}."""
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(EXAMPLES.glob("*.py"))}
