"""Export: the best model as a checkpoint folder with its model card, loss curve and metrics."""

from __future__ import annotations

import io
import json
import shlex
from pathlib import Path

from tinytorch import pretrained
from tinytorch.checkpoint import default_model_card, read_config, save_pretrained

from . import run_state

DESCRIPTIONS = {
    "level1": "Level 1: a tiny GPT that memorizes a dozen `INPUT>OUTPUT` pairs (prompt `INPUT>`, "
              "greedy answer). The pairs are in `tasks.txt`.",
    "copilot-tiny": "Copilot (tiny): a character-level GPT that autocompletes Python, trained on the "
                    "Python standard library.",
    "copilot": "Copilot: a character-level GPT that autocompletes Python, trained on the Python "
               "standard library.",
    "copilot-large": "Copilot (large): the overnight Copilot, a character-level GPT that autocompletes "
                     "Python, trained on the Python standard library.",
}


def loss_curve_png(records: list[dict]) -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [r for r in records if r.get("kind") == "train"]
    evals = [r for r in records if r.get("kind") == "eval"]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ax.plot([r["step"] for r in train], [r["loss"] for r in train], label="train loss", lw=1)
    ax.plot([r["step"] for r in evals], [r["val_loss"] for r in evals], "o-", label="validation loss", lw=1.5)
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats per character)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _figures_table(evals: list[dict]) -> list[str]:
    if "tasks_right" in (evals[0] if evals else {}):
        lines = ["| step | loss | pairs right |", "|---:|---:|---:|"]
        lines += [f"| {r['step']} | {r['val_loss']:.4f} | {r['tasks_right']}/{r['tasks_total']} |" for r in evals]
        return lines
    lines = ["| step | val loss | bits/char | next-char acc. | identifier completion | prompts right |",
             "|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| {r['step']} | {r['val_loss']:.4f} | {r['val_bits_per_char']:.3f} | {r['next_char_accuracy']:.3f} "
              f"| {r['identifier_completion']:.3f} | {r['prompt_checks_right']}/{r['prompt_checks_total']} |"
              for r in evals]
    return lines


def _full_validation(figures) -> list[str]:
    """The headline figures, on every validation file (python -m pretrain.validate records them)."""
    if not isinstance(figures, dict):
        return []
    return ["## Quality on every validation file", "",
            f"On all {figures['files']} validation files ({figures['characters']:,} characters scored): "
            f"**{figures['bits_per_char']:.3f} bits per character**, next-character accuracy "
            f"{figures['next_char_accuracy']:.3f}, and **{figures['identifier_completion']:.1%} of identifiers "
            f"completed** by greedy decoding from their first 3 characters ({figures['identifier_cases']} "
            f"identifiers of 6 or more characters, sampled). Measured by `{figures['command']}`.", ""]


def _how_trained(provenance: dict, records: list[dict]) -> list[str]:
    """Engine, hardware, the training time, and every interruption the run folder recorded."""
    train = [r for r in records if r.get("kind") == "train"]
    resumes = [r for r in records if r.get("kind") == "resume"]
    lines = []
    if provenance.get("hardware"):
        lines.append(f"Trained with the {provenance.get('engine', 'numpy')} engine on {provenance['hardware']}.")
    if train:
        minutes = train[-1].get("elapsed", 0) / 60
        lines.append(f"{train[-1]['step']:,} steps in {minutes:,.1f} minutes of training, evaluations included.")
    if resumes:
        lines.append("Interrupted and resumed (`--resume`, exactly where it stopped) "
                     + "; ".join(f"at step {r['step']:,}" + (f", on {r['hardware']}" if r.get("hardware") else "")
                                 for r in resumes) + ".")
    elif train and provenance.get("hardware"):  # a run that records its interruptions (older ones did not)
        lines.append("It ran without interruption.")
    return [" ".join(lines), ""] if lines else []


def model_card(name: str, config: dict, records: list[dict], best_step: int, folder: str | None = None) -> str:
    """folder: where the usage snippet loads it from (default checkpoints/NAME)."""
    evals = [r for r in records if r.get("kind") == "eval"]
    best = next((r for r in evals if r["step"] == best_step), evals[-1] if evals else {})
    provenance = config.get("provenance", {})
    out = provenance.get("out")  # the run folder as typed, when it was not the default
    command = provenance.get("command", "?") + (f" --out {shlex.quote(out)}" if out else "")
    lines = ["## Training", "", f"Made with: `{command}`", "", *_how_trained(provenance, records),
             f"This folder holds the step with the lowest validation loss: step {best_step}.", ""]
    corpus = provenance.get("corpus")
    if corpus:
        lines += [f"Corpus: `{corpus['root']}`, {corpus['train_files']} training files "
                  f"({corpus['train_chars']:,} characters) and {corpus['val_files']} validation files "
                  f"({corpus['val_chars']:,} characters); {corpus['split']}. "
                  f"Fingerprint `{corpus['fingerprint'][:16]}`.", ""]
    lines += _full_validation(provenance.get("full_validation"))
    lines += ["## Figures at each evaluation", ""]
    if corpus:
        where = ("are above" if provenance.get("full_validation") else
                 f"come from `python -m pretrain.validate {folder or f'checkpoints/{name}'}`")
        lines += ["Each evaluation during training scores a fixed slice of the validation files (`--eval-chars` "
                  f"characters, 100 identifiers), to cost seconds; the figures on every validation file {where}.", ""]
    lines += _figures_table(evals) + [
        "", "![loss curve](loss_curve.png)", "", "Every record is in `metrics.jsonl`.", ""]
    if best.get("prompt_checks"):
        lines += ["## Greedy completions (best step)", "", "| prompt | expected | got |", "|---|---|---|"]
        lines += [f"| `{c['prompt']}` | `{c['expected']}` | `{c['got']}` {'✓' if c['right'] else '✗'} |"
                  for c in best["prompt_checks"]]
        lines += ["", "## Samples (best step)", ""]
        for label, text in best.get("samples", {}).items():
            lines += [f"{label}", "", "```python", text, "```", ""]
    if best.get("answers"):
        lines += ["## Answers (best step)", "", "| input | expected | answer |", "|---|---|---|"]
        lines += [f"| {a['input']}> | {a['expected']} | {a['answer']} {'✓' if a['correct'] else '✗'} |"
                  for a in best["answers"]]
    prompt, new_tokens = ("FGHI>", 4) if name == "level1" else ("def ", 60)
    return default_model_card(config, title=f"tinytorch {name}", about=DESCRIPTIONS.get(name, ""),
                              folder=folder or f"checkpoints/{name}", prompt=prompt, new_tokens=new_tokens,
                              tags=("education",), sections=lines)


def shown_path(folder: Path) -> str:
    """A folder as a user in the current folder would type it: relative when it is below it."""
    folder = Path(folder).resolve()
    try:
        return folder.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(folder)


def export_files(model: str) -> tuple[str, ...]:
    """The files an export writes beside the checkpoint's own."""
    return ("metrics.jsonl", "loss_curve.png") + (("tasks.txt",) if model == "level1" else ())


def export_checkpoint(out: Path, export: Path, cfg, command: str) -> Path:
    """The best model of run folder `out` as a finished checkpoint folder at `export`."""
    best = run_state.best_step(out) / "model"
    model, tokenizer = pretrained.load(best)
    config = read_config(best)
    records = run_state.read_metrics(out)
    best_step = config.get("provenance", {}).get("steps", 0)
    extra = {
        "metrics.jsonl": "".join(json.dumps(r, sort_keys=True) + "\n" for r in records),
        "loss_curve.png": loss_curve_png(records),
    }
    if cfg.model == "level1":
        from tasks.level1 import format_tasks

        tasks = config["provenance"]["tasks"]
        extra["tasks.txt"] = format_tasks(t.split(">") for t in tasks)
    card = model_card(cfg.model, config, records, best_step, folder=shown_path(export))
    save_pretrained(model, export, tokenizer=tokenizer, provenance=config.get("provenance"),
                    model_card=card, extra_files=extra)
    return export
