"""Beam search: keep the N most likely partial completions, grow each by every possible next id,
keep the N best of those, until the best remaining one cannot beat what has already finished.

A character model decoded greedily writes loops and blank indentation on code: the likeliest next
character leads into a rut that a slightly less likely one avoids. Ranking whole continuations
(each up to its stop: the end of the line, of the block) instead of single characters avoids most
of them. The N beams advance together as one batch of N over the KV cache, so a step costs about
one forward pass of batch N.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .kernels import log_softmax


@dataclass
class Sequence:
    """One completion: the prompt + completion ids, the sum of the completion's log-probabilities
    (under the guarded distribution, before temperature, top-k and top-p), and the score beam
    search ranks by: logprob / (completion length ** length_penalty); greedy and sampling: logprob."""

    ids: list
    logprob: float
    score: float


@dataclass
class _Beam:
    ids: list  # prompt + completion so far
    text: str  # the completion's text ("" when no stop condition needs it)
    logprob: float
    parent: int  # the row of the previous step's batch it grew from


def score(logprob: float, length: int, length_penalty: float) -> float:
    """What beams are ranked by: the completion's log-probability over length ** length_penalty
    (transformers' rule). 0 ranks by log-probability alone, which favours short completions;
    1 by the mean log-probability per character."""
    return logprob / length ** length_penalty


def best_possible(logprob: float, length: int, max_length: int, length_penalty: float) -> float:
    """An upper bound on the score of any completion that continues an unfinished one. Log-
    probabilities are <= 0, so logprob can only fall; the length divides it by at most
    max_length ** length_penalty when length_penalty > 0, and by at least its current value otherwise."""
    return logprob / (max_length if length_penalty > 0 else length) ** length_penalty


def beam_search(logits_of, guard, rules, chars, prompt: list, max_new_tokens: int, num_beams: int,
                length_penalty: float, num_return_sequences: int) -> list:
    """The num_return_sequences best distinct completions found, best first, as Sequences (fewer,
    maybe none, when the rules offer fewer).

    logits_of: generate.NextLogits; guard: generate.Guard; rules: code_constraints.Rules (the stop
    condition and the code constraints); chars: each id's character, or None when nothing reads text.

    A completion finishes when the rules say it has ended, or at max_new_tokens ids (as the
    rules' at_cap says: offered, dropped, or a fallback in case nothing else finishes).
    Each step ranks every (beam, next id) pair by log-probability and walks down that list: pairs
    that finish go to the finished list (two with the same key, rules.key: the better one stays), the
    others become the next step's beams (those rules.may_grow lets go on), until there are
    num_beams of them. The search ends when no beam is left, or when num_return_sequences have
    finished and no beam can beat the last of them (best_possible): with enough beams to keep
    every continuation, it returns exactly what scoring all of them would.
    """
    if max_new_tokens == 0:
        return [Sequence(list(prompt), 0.0, 0.0)]
    prompt_len = len(prompt)
    beams = [_Beam(list(prompt), "", 0.0, 0)]
    finished: dict = {}  # rules.key -> Sequence
    fallback = []  # cut off by the cap, but not a completion (rules.at_cap): if nothing else
    logits = logits_of([prompt])  # (1, V)
    for step in range(1, max_new_tokens + 1):
        logp = np.stack([log_softmax(rules.ban(guard(row, b.ids), b.text)) for row, b in zip(logits, beams)])  # (B, V)
        totals = np.array([b.logprob for b in beams])[:, None] + logp  # (B, V)
        order = np.argsort(-totals, axis=None, kind="stable")
        vocab = totals.shape[1]
        last = step == max_new_tokens
        growing, ended = [], 0
        for flat in order:
            total = float(totals.flat[flat])
            if total == -np.inf or len(growing) == num_beams or (last and ended == num_beams):
                break
            row, token = divmod(int(flat), vocab)
            parent = beams[row]
            ids = parent.ids + [token]
            text = parent.text + chars[token] if chars is not None else ""
            keep = rules.end(ids, step, text)
            if keep is None and last:
                verdict = rules.at_cap(text)
                if verdict == "drop":
                    continue
                keep = step
                if verdict == "fallback":
                    fallback.append(Sequence(ids, total, score(total, step, length_penalty)))
                    continue
            if keep is None:
                if rules.may_grow(text):
                    growing.append(_Beam(ids, text, total, row))
                continue
            if not rules.offered(text[:keep]):
                continue
            ended += 1
            done = Sequence(ids[:prompt_len + keep], total, score(total, step, length_penalty))
            key = rules.key(done.ids, text[:keep])
            if key not in finished or finished[key].score < done.score:
                finished[key] = done
        ranked = sorted(finished.items(), key=lambda kv: -kv[1].score)[:max(num_beams, num_return_sequences)]
        finished = dict(ranked)
        if not growing:
            break
        if len(ranked) >= num_return_sequences:
            bound = max(best_possible(b.logprob, step, max_new_tokens, length_penalty) for b in growing)
            if bound <= ranked[num_return_sequences - 1][1].score:
                break
        beams = growing
        logits = logits_of([b.ids for b in beams], [b.parent for b in beams])
    ranked = sorted(finished.values(), key=lambda s: -s.score) or sorted(fallback, key=lambda s: -s.score)
    return ranked[:num_return_sequences]
