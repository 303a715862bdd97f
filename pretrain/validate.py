"""The figures of a Copilot checkpoint on every validation file, recorded in its provenance.

    python -m pretrain.validate checkpoints/copilot [--corpus PATH]

Pretraining evaluates a fixed slice of the validation files (`--eval-chars`, 60,000 characters)
so that an evaluation costs seconds; the headline figures of a shipped model are measured here on
all of them: bits per character and next-character accuracy on every character (what
`python -m tinytorch eval CHECKPOINT $(python -m pretrain.corpus val)` prints), and identifier
completion on 500 identifiers sampled from them. The result goes into config.json as
provenance["full_validation"], with the command that measured it; the weights are not touched.
A folder exported by pretraining (it holds metrics.jsonl) gets its model card rewritten too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shlex
import sys
from pathlib import Path

from tqdm import tqdm

from tinytorch import pretrained
from tinytorch.checkpoint import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME, CheckpointError, \
    read_config, write_config
from tinytorch.evaluate import identifier_completion, text_metrics

from .corpus import load_corpus

IDENTIFIERS = 500  # identifier-completion cases: the sampling error of a share is about 2 points


def full_validation(model, tokenizer, val_files, identifiers: int = IDENTIFIERS, progress=None) -> dict:
    """Figures on every file of `val_files` ([(relative path, text)])."""
    texts = [text for _, text in val_files]
    metrics = text_metrics(model, tokenizer, texts, progress=progress)
    return {
        "files": len(texts),
        "characters": metrics["characters"],
        "bits_per_char": round(metrics["bits_per_char"], 4),
        "next_char_accuracy": round(metrics["next_char_accuracy"], 4),
        "identifier_completion": round(identifier_completion(model, tokenizer, texts, limit=identifiers), 4),
        "identifier_cases": identifiers,
    }


def file_sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def validate(folder, corpus: str = "", command: str = "", show_progress: bool = False) -> dict:
    """Measure `folder` on its corpus's validation files and record the figures in its config.json."""
    folder = Path(folder)
    config = read_config(folder)
    provenance = config.get("provenance") or {}
    recorded = provenance.get("corpus") or {}
    if not isinstance(recorded, dict) or "fingerprint" not in recorded:
        raise CheckpointError(f"{folder / CONFIG_NAME}: records no corpus fingerprint; only a Copilot made by "
                              "`python -m pretrain` knows its validation files")
    data = load_corpus(corpus, provenance.get("val_fraction", 0.1))
    if data.fingerprint() != recorded["fingerprint"]:
        raise CheckpointError(f"{folder}: was trained on another corpus (fingerprint {recorded['fingerprint'][:16]}, "
                              f"this one {data.fingerprint()[:16]}); pass the same --corpus, or run it with the "
                              "Python whose standard library it was trained on")
    model, tokenizer = pretrained.load(folder)
    total = sum(max(len(tokenizer.encode(text)) - 1, 0) for _, text in data.val)  # the first char is not predicted
    with tqdm(total=total, unit="char", unit_scale=True, desc="scoring", file=sys.stderr,
              disable=not show_progress) as bar:
        figures = full_validation(model, tokenizer, data.val, progress=bar.update)
    figures["command"] = command or f"python -m pretrain.validate {shlex.quote(str(folder))}"
    figures["weights_sha256"] = file_sha256(folder / WEIGHTS_NAME)  # the figures belong to these weights
    provenance["full_validation"] = figures
    config["provenance"] = provenance
    write_config(folder, config)
    if (folder / "metrics.jsonl").is_file() and "model" in provenance:
        from .report import model_card, shown_path

        records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
        card = model_card(provenance["model"], config, records, provenance.get("steps", 0), folder=shown_path(folder))
        (folder / CARD_NAME).write_text(card, encoding="utf-8")
    return figures


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pretrain.validate", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+", metavar="CHECKPOINT", help="checkpoint folders made by pretrain")
    parser.add_argument("--corpus", default="", help="the corpus it was trained on (default: the standard library "
                                                     "of the Python running this)")
    args = parser.parse_args(argv)
    for folder in args.checkpoints:
        command = "python -m pretrain.validate " + shlex.join([folder] + (["--corpus", args.corpus] if args.corpus else []))
        try:
            figures = validate(folder, args.corpus, command, show_progress=True)
        except (CheckpointError, ValueError, OSError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        print(json.dumps({"checkpoint": folder, **figures}, indent=2), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
