"""HTML and Markdown for the demos: the prompt told apart from what the model wrote, the
side-by-side comparison, the attention map, the model card summary. Plain strings, no gradio;
inline styles, so they look the same wherever the HTML lands (app, Space, test screenshot).
"""

from __future__ import annotations

import json
from html import escape

import numpy as np

CODE = ("font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 14px; "
        "line-height: 1.45; white-space: break-spaces; overflow-wrap: anywhere; margin: 0; overflow: hidden; padding: 12px 14px; "
        "border-radius: 8px; background: #f8fafc; color: #0f172a; border: 1px solid #e2e8f0;")
PROMPT = "color: #64748b;"
WRITTEN = "background: #bbf7d0; color: #14532d; border-radius: 3px; box-shadow: 0 0 0 1px #86efac;"
MUTED = "color: #64748b; font-size: 13px;"
BEFORE, AFTER = "#2563eb", "#16a34a"  # pretrained blue, fine-tuned green, everywhere


def completion(prompt: str, written: str, tail_lines: int | None = None) -> str:
    """<pre> with the prompt in grey and the model's characters on green. tail_lines: show only
    the end of the prompt (its last lines), where a comparison table has no room for all of it."""
    if tail_lines is not None:
        lines = prompt.split("\n")
        prompt = ("…" if len(lines) > tail_lines else "") + "\n".join(lines[-tail_lines:])
    marked = escape(written) if written else "<i>(nothing)</i>"
    return (f'<pre style="{CODE}"><span style="{PROMPT}">{escape(prompt)}</span>'
            f'<span style="{WRITTEN}">{marked}</span></pre>')


def legend(extra: str = "") -> str:
    return (f'<div style="{MUTED} margin-top: 6px;"><span style="{PROMPT}">grey: the prompt</span> · '
            f'<span style="{WRITTEN} padding: 0 4px;">green: written by the model</span>{extra}</div>')


def generation(prompt: str, written: str, seconds: float, model_label: str) -> str:
    speed = f"{len(written) / seconds:,.0f} chars/s" if seconds > 0 and written else ""
    return completion(prompt, written) + legend(f" · {len(written)} characters by {escape(model_label)}"
                                                f"{' · ' + speed if speed else ''}")


def seed_note(seed: int) -> str:
    """Under a sampled completion: its seed, to draw the same text again."""
    return (f'<div style="{MUTED} margin-top: 4px;">Sampled with seed <b>{seed}</b>: each press draws a new one; '
            f"type {seed} into Seed (under Sampling and length) to get this text again.</div>")


def status(text: str, kind: str = "info") -> str:
    colors = {"info": ("#eff6ff", "#1e3a8a", "#bfdbfe"), "ok": ("#f0fdf4", "#14532d", "#bbf7d0"),
              "warn": ("#fffbeb", "#78350f", "#fde68a")}[kind]
    return (f'<div style="background: {colors[0]}; color: {colors[1]}; border: 1px solid {colors[2]}; '
            f'border-radius: 8px; padding: 10px 14px; font-size: 14px;">{text}</div>')


def progress(step: int, steps: int, loss: float, elapsed: float, remaining: float, note: str = "",
             done: bool = False, unit: str = "") -> str:
    share = 100 * step / max(steps, 1)
    left = "" if done else f" · about {remaining:.1f} s left"
    bar = (f'<div style="height: 8px; background: #e2e8f0; border-radius: 4px; margin-top: 8px;">'
           f'<div style="height: 8px; width: {share:.1f}%; background: {AFTER}; border-radius: 4px;"></div></div>')
    head = "Done: " if done else "Training: "
    text = (f"<b>{head}step {step}/{steps}</b> · loss {loss:.3f}{unit} · {elapsed:.1f} s{left}"
            + (f'<div style="{MUTED} margin-top: 4px;">{note}</div>' if note else "") + bar)
    return status(text, "ok" if done else "info")


def comparison(rows: list[dict], held_out: dict | None, memorized: dict | None, split_note: str = "") -> str:
    """rows: [{prompt, pretrained, finetuned}]; held_out, memorized: the two models' figures on the
    held-out part and on the training part (demos.copilot.figures_on), held_out None when nothing
    was held out. The held-out figures lead: they say what the fine-tune learned; the training
    part's, beside them, what it memorized."""
    head = (f'<th style="text-align: left; padding: 6px; width: 50%; color: {BEFORE};">Pretrained</th>'
            f'<th style="text-align: left; padding: 6px; width: 50%; color: {AFTER};">Fine-tuned</th>')
    body = []
    for row in rows:
        cells = "".join(f'<td style="vertical-align: top; padding: 4px 6px;">'
                        f'{completion(row["prompt"], row[key], tail_lines=2)}</td>'
                        for key in ("pretrained", "finetuned"))
        body.append(f"<tr>{cells}</tr>")
    if held_out:
        sections = _scores("On the held-out part: what it learned",
                           f"{held_out['characters']:,} characters it never trained on. {split_note}", held_out)
        sections += _scores("On the training part: what it memorized",
                            "The text it trained on: a model can score well here by heart.", memorized, muted=True)
    else:
        sections = _scores("On the training text: what it memorized",
                           "Nothing was held out (the text is short, or the held-out share is 0), so these figures "
                           "are on the text it trained on: they show memorizing, not learning.", memorized)
    return (sections + f'<table style="width: 100%; border-collapse: collapse; table-layout: fixed;">'
            f'<thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            + legend(" · same prompt, same decoding, same settings for both"))


def _scores(title: str, hint: str, figures: dict | None, muted: bool = False) -> str:
    """A titled row of before -> after cards: bits/char, own names, own lines."""
    if not figures:
        return ""
    cards = [_score("Loss", f'{figures["bits_per_char"]["pretrained"]:.2f}',
                    f'{figures["bits_per_char"]["finetuned"]:.2f}', "bits per character (lower is better)"),
             _score("Keystrokes saved", f'{figures["keystrokes_saved"]["pretrained"]:.0%}',
                    f'{figures["keystrokes_saved"]["finetuned"]:.0%}', "typing it with Tab taking each next word")]
    for key, name, how in (("own_names_completed", "Your own names completed", "typed 3 characters, did it finish "
                                                                               "the name?"),
                           ("own_lines_completed", "Your own lines completed", "from each line's start, the whole "
                                                                               "line exactly?")):
        (before, total), (after, _) = figures[key]["pretrained"], figures[key]["finetuned"]
        if total:
            cards.append(_score(name, f"{before}/{total}", f"{after}/{total}", how))
    style = "opacity: 0.8;" if muted else ""
    return (f'<div style="margin-bottom: 10px; {style}"><div style="font-weight: 600;">{escape(title)}</div>'
            f'<div style="{MUTED} margin-bottom: 6px;">{escape(hint)}</div>'
            f'<div style="display: flex; gap: 12px; flex-wrap: wrap;">{"".join(cards)}</div></div>')


def _score(title: str, before: str, after: str, hint: str) -> str:
    return (f'<div style="flex: 1; min-width: 220px; border: 1px solid #e2e8f0; border-radius: 8px; padding: 10px 14px;">'
            f'<div style="{MUTED}">{escape(title)}</div>'
            f'<div style="font-size: 22px; font-weight: 600;"><span style="color: {BEFORE};">{escape(before)}</span>'
            f' <span style="color: #94a3b8;">→</span> <span style="color: {AFTER};">{escape(after)}</span></div>'
            f'<div style="{MUTED}">{escape(hint)}</div></div>')


def attention_map(text: str, weights: np.ndarray, title: str) -> str:
    """weights (T, T) over the characters of `text` (T of them) as a grid: row = the position
    looking, column = the position looked at; darker = more attention."""
    chars = [{" ": "␣", "\n": "⏎"}.get(c, c) for c in text]
    cell = "width: 15px; height: 15px; padding: 0; text-align: center;"
    label = f"font-family: ui-monospace, monospace; font-size: 11px; color: #334155; {cell}"
    top = "".join(f'<th style="{label}">{escape(c)}</th>' for c in chars)
    rows = []
    for t, c in enumerate(chars):
        cells = []
        for s in range(len(chars)):
            w = float(weights[t, s])
            shade = f"rgba(37, 99, 235, {w:.3f})" if s <= t else "#f1f5f9"
            tip = f"{chars[t]} looks at {chars[s]}: {w:.2f}" if s <= t else "future: masked"
            cells.append(f'<td title="{escape(tip)}" style="{cell} background: {shade}; border: 1px solid #fff;"></td>')
        rows.append(f'<tr><th style="{label}">{escape(c)}</th>{"".join(cells)}</tr>')
    return (f'<div style="{MUTED} margin-bottom: 6px;">{escape(title)}</div>'
            f'<div style="overflow-x: auto;"><table style="border-collapse: collapse;">'
            f'<tr><th></th>{top}</tr>{"".join(rows)}</table></div>'
            f'<div style="{MUTED} margin-top: 6px;">Each row is a character of the prompt; the blue '
            f'squares show which earlier characters it looks at (darker = more). Grey squares are the '
            f'future, which the model may not see.</div>')


FIGURES = {  # provenance keys worth a headline, with how to say them
    "steps": "{:,} training steps", "val_bits_per_char": "{:.2f} bits per character on held-out code",
    "identifier_completion": "{:.0%} of identifiers completed from 3 characters",
}


FULL_VALIDATION = ("{bits_per_char:.3f} bits per character and {identifier_completion:.1%} of identifiers completed "
                   "from 3 characters, on all {files} validation files (code it never trained on)")


def corpus_words(corpus) -> str:
    """pretrain's corpus record in words: '2,345,678 characters from 812 files (python3.11)'."""
    if not isinstance(corpus, dict):
        return _short(corpus, 80)
    where = str(corpus.get("root", "")).rstrip("/").rsplit("/", 1)[-1]
    if "train_chars" in corpus:
        try:
            files = f" from {corpus['train_files']:,} files" if "train_files" in corpus else ""
            return f"{corpus['train_chars']:,} characters{files}" + (f" ({_short(where, 40)})" if where else "")
        except (ValueError, TypeError):  # not numbers: shown as they are, below
            pass
    return _short(corpus, 80)


# What HTML and Markdown act on, as numeric entities, in one pass: text from a checkpoint shows
# as written, never as a tag, a link, an image or emphasis (html.escape alone stops only tags).
PLAIN = str.maketrans({c: f"&#{ord(c)};" for c in "&<>\"'\\`*_[]()#!|~:"})


def plain(value) -> str:
    """Any value (text from a config.json, an error) for a Markdown or HTML page, shown as text."""
    return str(value).translate(PLAIN)


def model_card(label: str, config: dict, parameters: int, note: str = "") -> str:
    """Markdown: what was loaded, its shape, what it was trained on and the figures it reached
    (whatever config.json's provenance records), the full record folded away. Everything taken
    from config.json is escaped (plain): a checkpoint from the Hub is anyone's."""
    lines = [f"**{plain(label)}** · {parameters:,} parameters · {plain(_count(config.get('n_layer'), 'layer'))} · "
             f"{plain(_count(config.get('n_head'), 'head'))} · n_embd {plain(config.get('n_embd'))} · "
             f"context {plain(config.get('n_positions'))} characters · vocabulary {plain(config.get('vocab_size'))}"]
    provenance = config.get("provenance") or {}
    if isinstance(provenance, dict) and provenance:
        figures = [f"trained on {plain(corpus_words(provenance['corpus']))}"] if provenance.get("corpus") else []
        headline = provenance
        try:  # the figures on every validation file, where recorded, instead of the training-time slice's
            figures.append(plain(FULL_VALIDATION.format(**provenance["full_validation"])))
            headline = {"steps": provenance.get("steps")}
        except (KeyError, ValueError, TypeError, AttributeError):
            pass
        for key, form in FIGURES.items():
            try:
                figures.append(plain(form.format(headline[key])))
            except (KeyError, ValueError, TypeError):
                pass
        if "tasks_right" in provenance and "tasks_total" in provenance:
            figures.append(plain(f"{_short(provenance['tasks_right'])}/{_short(provenance['tasks_total'])} pairs right"))
        if figures:
            lines.append("\n" + " · ".join(figures))
        rows = "".join(f"<tr><td><code>{plain(_short(k, 60))}</code></td><td>{plain(_short(v, 200))}</td></tr>"
                       for k, v in provenance.items())
        lines.append(f"\n<details><summary>Everything its config.json records about its training</summary>"
                     f"<table>{rows}</table></details>")
    else:
        lines.append("\n_No provenance recorded in this checkpoint's config.json._")
    if note:
        lines += ["", note]
    return "\n".join(lines)


def _count(n, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(value, limit: int = 60) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_short(v, 40)}" for k, v in value.items())[:limit]
    if isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, (list, tuple)):
        text = json.dumps(value)
    else:
        text = str(value)
    text = text.replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 1] + "…"


def next_word(word: str) -> str:
    """What Tab would accept: the model's next word, as an editor's "accept next word" takes it."""
    shown = (f'<code style="{WRITTEN} padding: 0 4px; white-space: pre;">{escape(word)}</code>' if word
             else "<i>(none on this line)</i>")
    return f'<div style="{MUTED} margin-top: 10px;">Next word (what Tab would accept): {shown}</div>'


def suggestions(found: list) -> str:
    """found: [(completion, probability)], best first: a list like a code editor's suggestions,
    the first one marked as the one shown above."""
    items = []
    for rank, (text, p) in enumerate(found):
        shown = text.strip("\n").replace("\n", "⏎") or "(no suggestion: none ends within the length cap)"
        style = WRITTEN if rank == 0 else ""
        items.append(f'<li style="margin: 2px 0;"><code style="{style} padding: 0 4px; white-space: pre;">'
                     f'{escape(shown)}</code> <span style="{MUTED}">{p:.1%}</span></li>')
    return (f'<div style="{MUTED} margin-top: 10px;">Suggestions, most likely first, with the probability '
            f'the model gives each whole completion:</div>'
            f'<ol style="margin: 4px 0 0 0; padding-left: 22px; font-family: ui-monospace, monospace; '
            f'font-size: 13px;">{"".join(items)}</ol>')
