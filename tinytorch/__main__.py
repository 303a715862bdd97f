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

from . import completion

CHECKPOINT_HELP = ("a shipped checkpoint by name (copilot, copilot-tiny, level1; from any folder), a checkpoint "
                   "folder, or a Hub repo id (user/model)")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        """Bad usage: one line, like every other error here, instead of usage text plus message."""
        self.exit(2, f"error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="python -m tinytorch", description="Generate with, evaluate, download and publish "
                    "tinytorch checkpoints.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = commands.add_parser("generate", help="continue a prompt", description="Print the prompt followed by the "
                            "model's continuation. By default it completes the line as the Copilot demo's Try it "
                            "does (a beam search that stops at the newline, with the code constraints of "
                            "tinytorch.code_constraints); --stop word gives the next word (greedy); --temperature, "
                            "--top-k, --top-p or --seed sample instead. A completion that does not reach its stop "
                            "within --max-new-tokens is not printed: then only the prompt is.")
    p.add_argument("checkpoint", help=CHECKPOINT_HELP)
    p.add_argument("prompt", help="the text to continue")
    # None = the mode's own default (see decoding_options).
    p.add_argument("--max-new-tokens", type=int, metavar="N", help="characters to add at most (default "
                   f"{completion.MAX_NEW_TOKENS} when completing, 200 when sampling)")
    p.add_argument("--temperature", type=float, metavar="T", help="sample at this temperature; 0 = greedy "
                   "(default 0.8 once any sampling flag is given)")
    p.add_argument("--top-k", type=int, metavar="K", help="sample among the K likeliest characters only")
    p.add_argument("--top-p", type=float, metavar="P", help="sample among the likeliest characters whose "
                   "probabilities add up to P")
    p.add_argument("--seed", type=int, metavar="S", help="makes sampling repeatable")
    p.add_argument("--num-beams", type=int, metavar="N", help="beam search over N beams (temperature, top-k "
                   f"and top-p then do not apply; default {completion.NUM_BEAMS} when completing a line or block, "
                   "1 for a word and when sampling)")
    p.add_argument("--length-penalty", type=float, default=completion.LENGTH_PENALTY, metavar="L",
                   help=f"beam search ranks by log-probability / length**L (default {completion.LENGTH_PENALTY:g})")
    p.add_argument("--num-return-sequences", type=int, default=1, metavar="K", help="print the K best "
                   "completions with their log-probabilities (beam search; K <= N)")
    p.add_argument("--stop", choices=["line", "block", "word", "none"], help="end at the end of the line, of "
                   "the block (a blank line or a line indented less than the block), or of the next word (the "
                   "rest of the identifier, or up to the end of the next one on the line), or only at "
                   "--max-new-tokens (default: line when completing, none when sampling)")
    p.add_argument("--no-constraints", action="store_true", help="complete without the code constraints (they "
                   "keep out whitespace runs, trailing spaces, wrong indentation, loops, repeated lines, "
                   "completions cut by the cap and duplicates; sampling never applies them)")
    p.add_argument("--repetition-penalty", type=float, default=1.0, metavar="R", help="make characters already "
                   "in the text less likely (transformers' repetition_penalty; 1 = off; the demo samples "
                   f"with {completion.REPETITION_PENALTY:g})")
    p.add_argument("--no-repeat-ngram-size", type=int, default=0, metavar="G", help="never repeat a run of "
                   "G characters (0 = off)")
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
    from .pretrained import load as load_pretrained

    return load_pretrained(checkpoint, revision)


def generate(args) -> None:
    model, tokenizer = load(args.checkpoint, args.revision)
    unknown = tokenizer.unknown_chars(args.prompt)
    if unknown:
        print(f"note: {len(unknown)} prompt character(s) outside the vocabulary became <unk>: "
              + " ".join(repr(c) for c in unknown[:10]), file=sys.stderr)
    ids = tokenizer.encode(args.prompt)
    options = decoding_options(args)
    found = model.generate(ids, **options, tokenizer=tokenizer, output_scores=True)
    if not found:  # the constraints offer no completion that was cut by the cap
        print(f"note: no completion reached its stop within {options['max_new_tokens']} characters "
              "(--max-new-tokens)", file=sys.stderr)
        print(tokenizer.decode(ids))
        return
    if len(found) == 1 and args.num_return_sequences == 1:
        print(tokenizer.decode(found[0].ids))
        return
    for rank, s in enumerate(found, start=1):
        print(f"# {rank}: log-probability {s.logprob:.3f}")
        print(tokenizer.decode(s.ids))


def decoding_options(args) -> dict:
    """generate()'s keyword arguments: the completion defaults of tinytorch.completion for the
    line, the block or the word (--stop; the line by default), unless a sampling flag was given;
    an option given on the command line always wins."""
    if any(v is not None for v in (args.temperature, args.top_k, args.top_p, args.seed)):
        options = {"max_new_tokens": 200, "temperature": 0.8, "num_beams": 1, "stop": None}
    else:
        options = completion.options(args.stop if args.stop in ("block", "word") else "line")
    for name in ("max_new_tokens", "temperature", "num_beams"):
        if getattr(args, name) is not None:
            options[name] = getattr(args, name)
    if args.stop is not None:
        options["stop"] = None if args.stop == "none" else args.stop
    if args.no_constraints:
        options["constraints"] = None
    options.update(top_k=args.top_k, top_p=args.top_p, seed=args.seed, length_penalty=args.length_penalty,
                   num_return_sequences=args.num_return_sequences, repetition_penalty=args.repetition_penalty,
                   no_repeat_ngram_size=args.no_repeat_ngram_size)
    return options


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
    from tqdm import tqdm

    # Progress on stderr, and only on a terminal (disable=None): stdout stays the JSON alone.
    total = sum(max(len(tokenizer.normalize(text)) - 1, 0) for text in texts)
    with tqdm(total=total, unit="char", unit_scale=True, desc="scoring", file=sys.stderr, disable=None,
              leave=False) as bar:
        metrics = text_metrics(model, tokenizer, texts, progress=bar.update)
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
    from .text import CharTokenizer

    print(download(args.repo_id, revision=args.revision, to=args.to, validate=CharTokenizer.check_config))


def push(args) -> None:
    from .pretrained import push_folder

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
