"""python -m tinytorch {generate, eval, download, push}: the command line.

A thin layer over the library: each command parses its arguments, calls one or two library
functions and prints the result. A failure is one line on stderr ("error: ...") and a non-zero
exit status (1; 2 for bad usage; 130 for Ctrl-C), never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

CHECKPOINT_HELP = "a checkpoint folder (e.g. checkpoints/copilot) or a Hub repo id (user/model)"


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad usage: one line, like every other error here, instead of usage text plus message."""
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m tinytorch", description="Generate with, evaluate, download and publish "
                    "tinytorch checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("generate", help="continue a prompt", description="Print the prompt followed by the "
                            "model's continuation.")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("prompt", help="the text to continue")
    p.add_argument("--max-new-tokens", type=int, default=200, metavar="N", help="characters to add (default 200)")
    p.add_argument("--temperature", type=float, default=0.8, metavar="T", help="0 = greedy (default 0.8)")
    p.add_argument("--top-k", type=int, metavar="K", help="sample among the K likeliest characters only")
    p.add_argument("--top-p", type=float, metavar="P", help="sample among the likeliest characters whose "
                   "probabilities add up to P")
    p.add_argument("--seed", type=int, metavar="S", help="makes sampling repeatable")
    p.add_argument("--revision", metavar="R", help="branch, tag or commit of a Hub repo")
    p.set_defaults(run=generate)

    p = commands.add_parser("eval", help="bits per character and next-character accuracy on text files",
                            description="Score a checkpoint on text files; print JSON with bits_per_char (lower "
                            "is better), next_char_accuracy, characters scored and the files.")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("files", nargs="+", metavar="FILE", help="UTF-8 text files")
    p.add_argument("--revision", metavar="R", help="branch, tag or commit of a Hub repo")
    p.set_defaults(run=evaluate)

    p = commands.add_parser("download", help="fetch a checkpoint from the Hugging Face Hub",
                            description="Fetch a checkpoint into the Hub cache (or DIR) and print its folder. "
                            "Set HF_HUB_OFFLINE=1 to use the cache only.")
    p.add_argument("repo_id", help="user/model")
    p.add_argument("--revision", metavar="R", help="branch, tag or commit (default: main)")
    p.add_argument("--to", metavar="DIR", help="copy the checkpoint into this folder")
    p.set_defaults(run=download)

    p = commands.add_parser("push", help="publish a checkpoint folder on the Hugging Face Hub",
                            description="Upload a checkpoint folder to a model repo (created if needed) and "
                            "print the commit URL. The token comes from HF_TOKEN or `hf auth login`.")
    p.add_argument("checkpoint", help="a checkpoint folder")
    p.add_argument("repo_id", help="user/model")
    p.add_argument("--private", action="store_true", help="create the repo private")
    p.add_argument("--message", default="Upload tinytorch checkpoint", help="the commit message")
    p.set_defaults(run=push)
    return parser


# ----------------------------------------------------------------------------- commands
def load(checkpoint: str, revision: str | None):
    """(model, tokenizer) of one checkpoint, fetched once when it is a Hub repo id."""
    from .checkpoint import load_model, load_tokenizer, resolve

    folder = resolve(checkpoint, revision)
    return load_model(folder), load_tokenizer(folder)


def generate(args) -> None:
    model, tokenizer = load(args.checkpoint, args.revision)
    unknown = tokenizer.unknown_chars(args.prompt)
    if unknown:
        print(f"note: {len(unknown)} prompt character(s) outside the vocabulary became <unk>: "
              + " ".join(repr(c) for c in unknown[:10]), file=sys.stderr)
    ids = model.generate(tokenizer.encode(args.prompt), args.max_new_tokens, temperature=args.temperature,
                         top_k=args.top_k, top_p=args.top_p, seed=args.seed)
    print(tokenizer.decode(ids))


def read_text(path: str) -> str:
    """A file's text, or a ValueError saying why it is not a text file."""
    data = Path(path).read_bytes()  # FileNotFoundError / IsADirectoryError name the path
    if b"\0" in data:
        raise ValueError(f"{path}: looks binary (it holds NUL bytes); eval scores text files")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path}: not UTF-8 text (byte {err.start})") from None


def evaluate(args) -> None:
    from .evaluate import text_metrics

    texts = [read_text(path) for path in args.files]  # every file checked before the model loads
    model, tokenizer = load(args.checkpoint, args.revision)
    metrics = text_metrics(model, tokenizer, texts)
    if metrics["characters"] == 0:
        raise ValueError("nothing to score: every file holds fewer than 2 characters")
    if not all(math.isfinite(metrics[key]) for key in ("bits_per_char", "loss")):
        raise ValueError(f"{args.checkpoint}: the model's scores are not finite numbers (NaN or infinite); "
                         "its weights are damaged")
    unknown = sum(c not in tokenizer.stoi for text in texts for c in tokenizer.normalize(text))
    report = {
        "checkpoint": args.checkpoint,
        "files": args.files,
        "characters": metrics["characters"],  # characters predicted (each file's first one is not)
        "bits_per_char": metrics["bits_per_char"],
        "next_char_accuracy": metrics["next_char_accuracy"],
        "loss": metrics["loss"],  # nats per character
        "unknown_characters": unknown,  # outside the vocabulary: scored as <unk>
    }
    print(json.dumps(report, indent=2, allow_nan=False))  # valid JSON: NaN is not


def download(args) -> None:
    from .hub import download

    print(download(args.repo_id, revision=args.revision, to=args.to))


def push(args) -> None:
    from .hub import push_folder

    print(push_folder(args.checkpoint, args.repo_id, private=args.private, commit_message=args.message))


# ----------------------------------------------------------------------------- entry point
def fail(message: str, status: int = 1) -> int:
    print("error: " + " ".join(str(message).split()), file=sys.stderr)  # one line, whatever the message
    return status


def main(argv=None) -> int:
    """Run one command (argv: the arguments after `python -m tinytorch`); returns the exit status."""
    from .checkpoint import CheckpointError

    try:
        args = build_parser().parse_args(argv)
    except SystemExit as done:  # --help, or bad usage (already reported on one line)
        return done.code or 0
    try:
        args.run(args)
    except KeyboardInterrupt:
        return fail("interrupted", 130)
    except BrokenPipeError:  # `... | head`: the reader left; say nothing more
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (CheckpointError, ValueError, OSError) as err:
        return fail(describe(err))
    return 0


def describe(err: Exception) -> str:
    if isinstance(err, FileNotFoundError) and err.filename:
        return f"{err.filename}: no such file or folder"
    if isinstance(err, IsADirectoryError) and err.filename:
        return f"{err.filename}: is a folder, not a file"
    if isinstance(err, OSError) and err.filename and err.strerror:
        return f"{err.filename}: {err.strerror}"
    return str(err)


if __name__ == "__main__":
    # huggingface_hub logs each retry of an unreachable Hub; the one-line error says it all.
    os.environ.setdefault("HF_HUB_VERBOSITY", "error")
    sys.exit(main())
