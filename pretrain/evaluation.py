"""What each evaluation measures, for the Copilot models and for Level 1."""

from __future__ import annotations

from tinytorch import no_grad
from tinytorch.evaluate import identifier_completion, text_metrics
from tinytorch.nn import functional as F

# Common Python that a Copilot must complete right (greedy): prompt -> expected continuation.
PROMPT_CHECKS = [
    ("import o", "s"),
    ("if __name__ == '__ma", "in__':"),
    ("for i in ra", "nge("),
    ("self.assertEqu", "al("),
    ("raise ValueErr", "or("),
    ("    def __init__(se", "lf"),
    ("from collections import namedt", "uple"),
    ("except KeyboardInterr", "upt"),
    ("if isinstance(value, st", "r)"),
    ("return NotImplemen", "ted"),
]
SAMPLE_PROMPTS = ["def ", "class ", "import "]


def validation_texts(val_files, budget: int) -> list[str]:
    """A fixed slice of every validation file, `budget` characters in all."""
    per_file = max(2000, budget // max(len(val_files), 1))
    texts, used = [], 0
    for _, text in val_files:
        if used >= budget:
            break
        texts.append(text[:per_file])
        used += len(texts[-1])
    return texts


def prompt_checks(model, tokenizer) -> list[dict]:
    results = []
    for prompt, expected in PROMPT_CHECKS:
        ids = tokenizer.encode(prompt)
        got = tokenizer.decode(model.generate(ids, len(expected), temperature=0.0)[len(ids):])
        results.append({"prompt": prompt, "expected": expected, "got": got, "right": got == expected})
    return results


def samples(model, tokenizer, n: int = 120) -> dict:
    out = {}
    for prompt in SAMPLE_PROMPTS:
        ids = tokenizer.encode(prompt)
        out[f"greedy: {prompt}"] = tokenizer.decode(model.generate(ids, n, temperature=0.0))
    ids = tokenizer.encode("def ")
    out["T=0.8 seed 0: def "] = tokenizer.decode(model.generate(ids, 2 * n, temperature=0.8, seed=0))
    return out


def copilot_eval(val_files, tokenizer, cfg):
    texts = validation_texts(val_files, cfg.eval_chars)

    def evaluate(model) -> dict:
        metrics = text_metrics(model, tokenizer, texts)
        checks = prompt_checks(model, tokenizer)
        return {
            "val_loss": metrics["loss"],
            "val_bits_per_char": metrics["bits_per_char"],
            "next_char_accuracy": metrics["next_char_accuracy"],
            "identifier_completion": identifier_completion(model, tokenizer, texts, cfg.eval_identifiers),
            "prompt_checks": checks,
            "prompt_checks_right": sum(c["right"] for c in checks),
            "prompt_checks_total": len(checks),
            "samples": samples(model, tokenizer),
        }

    return evaluate


def level1_eval(pairs, tokenizer):
    from tasks.level1 import evaluate_tasks, task_batch

    x, y = task_batch(pairs, tokenizer)

    def evaluate(model) -> dict:
        with no_grad():
            loss = F.cross_entropy(model(x), y).item()
        answers = evaluate_tasks(model, tokenizer, pairs)
        return {"val_loss": loss, "tasks_right": sum(a["correct"] for a in answers),
                "tasks_total": len(answers), "answers": answers}

    return evaluate
