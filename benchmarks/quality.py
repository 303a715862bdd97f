"""Quality of the shipped checkpoints on validation files that training never saw.

    python benchmarks/quality.py [CHECKPOINT ...]

Prints, for each Copilot: bits per character and next-character accuracy on every validation
file (the figures `python -m tinytorch eval CHECKPOINT $(python -m pretrain.corpus val)` prints),
next-identifier completion on 500 sampled identifiers, the common-Python prompts, and a sample at
temperature 0.8 with its longest run of one repeated character. For Level 1: its pairs.
"""

import itertools
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from pretrain.corpus import load_corpus  # noqa: E402
from pretrain.evaluation import prompt_checks  # noqa: E402
from tasks.level1 import evaluate_tasks, read_tasks  # noqa: E402
from pretrain.validate import full_validation  # noqa: E402
from tinytorch import pretrained  # noqa: E402


def longest_run(text: str) -> int:
    return max((len(list(group)) for _, group in itertools.groupby(text)), default=0)


def copilot_quality(folder: Path, val_files: list) -> dict:
    model, tok = pretrained.load(folder)
    figures = full_validation(model, tok, val_files)  # what `python -m pretrain.validate` records
    checks = prompt_checks(model, tok)
    sample = tok.decode(model.generate(tok.encode("def "), 300, temperature=0.8, seed=0))
    return {
        **{key: figures[key] for key in ("bits_per_char", "next_char_accuracy", "characters",
                                         "identifier_completion")},
        "prompts_right": f"{sum(c['right'] for c in checks)}/{len(checks)}",
        "prompts": {c["prompt"]: c["got"] for c in checks},
        "sample_longest_repeat": longest_run(sample.replace(" ", "")),
        "sample": sample,
    }


def main(argv):
    folders = [Path(a) for a in argv] or [ROOT / "checkpoints" / n for n in ("level1", "copilot-tiny", "copilot")]
    val_files = None
    for folder in folders:
        if (folder / "tasks.txt").exists():
            answers = evaluate_tasks(*pretrained.load(folder), read_tasks(folder / "tasks.txt"))
            result = {"pairs_right": f"{sum(a['correct'] for a in answers)}/{len(answers)}",
                      "answers": {a["input"]: a["answer"] for a in answers}}
        else:
            val_files = val_files or load_corpus().val
            result = copilot_quality(folder, val_files)
        print(json.dumps({"checkpoint": str(folder), **result}, indent=2), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
