"""Beam search, stop conditions, the repetition guard and the ids generation never writes, each
against a value computed another way: brute force over every continuation, hand-computed logits,
the model's own forward pass."""

import itertools

import numpy as np
import pytest

import tinytorch
from tinytorch.generate import Guard, banned_by_ngrams, log_softmax, penalize_repeats
from tinytorch.nn import GPT, GPTConfig
from tinytorch.stopping import StopCondition, block_end
from tinytorch.text import CharTokenizer

TOKENIZER = CharTokenizer("ab\n ")  # <pad> <unk> \n ' ' a b: 4 ids to generate, newlines often


def tiny(vocab=TOKENIZER.vocab_size, n_positions=16, seed=3):
    tinytorch.manual_seed(seed)
    model = GPT(GPTConfig(vocab_size=vocab, n_positions=n_positions, n_embd=16, n_layer=2, n_head=2)).eval()
    for p in model.parameters():  # weights large enough for peaked, varied distributions
        p.data *= 8.0
    return model


def direct_logprob(model, prompt, completion) -> float:
    """Sum of log p(completion[i] | everything before) from one forward pass over the whole
    sequence, <pad> and <unk> removed from the distribution."""
    ids = list(prompt) + list(completion)
    with tinytorch.no_grad():
        logits = model(np.array([ids])).data[0].astype(np.float64)  # (T, V)
    logits[:, [TOKENIZER.pad_id, TOKENIZER.unk_id]] = -np.inf
    logp = log_softmax(logits)
    return sum(logp[len(prompt) - 1 + i, t] for i, t in enumerate(completion))


def brute_force(model, prompt, max_new, stop, length_penalty):
    """Every continuation up to its stop or max_new ids, scored and ranked: {kept ids: (score, logprob)}."""
    stopper = StopCondition(stop, TOKENIZER.decode(prompt), True)
    tokens = range(2, TOKENIZER.vocab_size)
    found = {}
    for length in range(1, max_new + 1):
        for completion in itertools.product(tokens, repeat=length):
            ended = [stopper(list(prompt) + list(completion[:n]), n, TOKENIZER.decode(completion[:n]))
                     for n in range(1, length + 1)]
            if any(e is not None for e in ended[:-1]):
                continue  # it stopped earlier: counted as that shorter completion
            keep = ended[-1] if ended[-1] is not None else (length if length == max_new else None)
            if keep is None:
                continue  # unfinished and under the cap: only its continuations count
            if ended[-1] is None and not stopper.counts_at_cap(TOKENIZER.decode(completion)):
                continue  # whitespace cut off by the cap: not a line or a block
            logprob = direct_logprob(model, prompt, completion)
            score = logprob / length ** length_penalty
            key = tuple(prompt) + completion[:keep]
            if key not in found or found[key][0] < score:
                found[key] = (score, logprob)
    return sorted(found.items(), key=lambda kv: -kv[1][0])


@pytest.mark.parametrize("stop, length_penalty", [(None, 1.0), ("line", 1.0), ("line", 0.0), ("block", 1.0),
                                                  ("block", 2.0), (["ab"], -0.5)])
def test_beam_search_with_beams_for_everything_finds_what_brute_force_finds(stop, length_penalty):
    model = tiny()
    prompt = TOKENIZER.encode("a b\n  ")
    max_new = 4
    expected = brute_force(model, prompt, max_new, stop, length_penalty)
    got = model.generate(prompt, max_new, stop=stop, tokenizer=TOKENIZER, num_beams=4 ** max_new,
                         length_penalty=length_penalty, num_return_sequences=5, output_scores=True)
    assert [s.ids for s in got] == [list(ids) for ids, _ in expected[:5]]
    np.testing.assert_allclose([s.score for s in got], [v[0] for _, v in expected[:5]], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose([s.logprob for s in got], [v[1] for _, v in expected[:5]], rtol=1e-4, atol=1e-4)
    assert len({tuple(s.ids) for s in got}) == 5  # distinct
    assert all(a.score >= b.score for a, b in zip(got, got[1:]))  # best first


def test_narrow_beam_search_returns_true_scores_and_never_beats_brute_force():
    model = tiny(seed=4)
    prompt = TOKENIZER.encode("ab a")
    best = brute_force(model, prompt, 4, "line", 1.0)[0]
    got = model.generate(prompt, 4, stop="line", tokenizer=TOKENIZER, num_beams=2, num_return_sequences=2,
                         length_penalty=1.0, output_scores=True)
    for s in got:
        completion = s.ids[len(prompt):]
        assert s.score <= best[1][0] + 1e-6
        if completion[-1] == TOKENIZER.stoi["\n"] or len(completion) == 4:  # nothing trimmed
            assert s.logprob == pytest.approx(direct_logprob(model, prompt, completion), abs=1e-4)


def test_cached_beams_equal_uncached_beams_across_the_window():
    model = tiny(n_positions=8, seed=5)
    prompt = TOKENIZER.encode("ab ba")
    kwargs = dict(num_beams=3, num_return_sequences=3, output_scores=True, tokenizer=TOKENIZER)
    for stop in (None, "block"):
        cached = model.generate(prompt, 12, stop=stop, use_cache=True, **kwargs)  # runs past the window of 8
        recomputed = model.generate(prompt, 12, stop=stop, use_cache=False, **kwargs)
        assert [s.ids for s in cached] == [s.ids for s in recomputed]
        np.testing.assert_allclose([s.logprob for s in cached], [s.logprob for s in recomputed], atol=1e-4)


def test_greedy_log_probability_matches_the_forward_pass():
    model = tiny()
    prompt = TOKENIZER.encode("ab")
    (s,) = model.generate(prompt, 6, temperature=0.0, output_scores=True)
    assert s.logprob == pytest.approx(direct_logprob(model, prompt, s.ids[len(prompt):]), abs=1e-4)


# ----------------------------------------------------------------------------- stop conditions
def test_line_stop_needs_code_then_a_newline():
    stop = StopCondition("line", "def f(x):", True)
    assert stop([], 1, "\n") is None  # only the end of the prompt's line: go on
    assert stop([], 5, "\n    ") is None
    assert stop([], 14, "\n    return x\n") == 14
    assert stop([], 3, "x)\n") == 3


@pytest.mark.parametrize("text, indent, keep", [
    ("x = 1\n", 4, None),
    ("x = 1\n\n", 4, 6),  # a blank line: keep the line with code and its newline
    ("x = 1\n    \n", 4, 6),  # blank with spaces
    ("\n\n", 0, None),  # nothing written yet
    ("x\n  y", 4, 2),  # dedent below 4: stop at its first character, keep "x\n"
    ("x\n    y", 4, None),  # same indentation: the block goes on
    ("x\n        ", 4, None),  # indentation being written
    ("\n    return 1\ndef", 0, None),  # never below 0
    ("\n    return 1\n", 4, None),
])
def test_block_end(text, indent, keep):
    assert block_end(text, indent) == keep


def test_whitespace_cut_off_by_the_cap_is_no_line():
    """Whitespace cut off by max_new_tokens is no line or block (beam search keeps it only as a
    fallback; the brute force above applies the same rule)."""
    assert not StopCondition("line", "", True).counts_at_cap("    ")
    assert StopCondition("line", "", True).counts_at_cap("  x") and StopCondition(None).counts_at_cap(" ")


def test_stop_strings_and_id_sequences_keep_the_stop():
    stop = StopCondition(["):", [7, 8]], "", True)
    assert stop([1, 2], 2, "x)") is None and stop([1, 2], 3, "x):") == 3
    assert stop([1, 7, 8], 2, "ab") == 2


@pytest.mark.parametrize("stop", ["line", "block", ["b "]])
def test_each_stop_ends_greedy_decoding_where_the_free_run_meets_it(stop):
    """Greedy with a stop condition = the free greedy run, cut where the condition first fires."""
    model = tiny(seed=6)
    prompt = TOKENIZER.encode("ab\n  a")
    free = model.generate(prompt, 14, temperature=0.0)[len(prompt):]
    stopper = StopCondition(stop, TOKENIZER.decode(prompt), True)
    expected = free
    for n in range(1, len(free) + 1):
        keep = stopper(prompt + free[:n], n, TOKENIZER.decode(free[:n]))
        if keep is not None:
            expected = free[:keep]
            break
    else:
        pytest.fail("the free run never meets the stop condition: choose another seed")
    assert model.generate(prompt, 14, temperature=0.0, stop=stop, tokenizer=TOKENIZER) == prompt + expected


def test_max_new_tokens_is_a_hard_cap():
    model = tiny()
    for kwargs in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 2}, {"num_beams": 4},
                   {"num_beams": 4, "stop": "line", "tokenizer": TOKENIZER}):
        for n in (0, 1, 3):
            assert len(model.generate([2, 3], n, **kwargs)) <= 2 + n
    assert model.generate([2, 3], 0, num_beams=3) == [2, 3]


# ----------------------------------------------------------------------------- the guard
def test_repetition_penalty_changes_exactly_the_seen_ids():
    logits = np.array([2.0, -1.0, 0.5, 3.0, -2.0])
    out = penalize_repeats(logits.copy(), [0, 1, 1, 4], 2.0)
    np.testing.assert_array_equal(out, [1.0, -2.0, 0.5, 3.0, -4.0])


def test_no_repeat_ngram_bans_exactly_what_would_repeat_an_ngram():
    assert banned_by_ngrams([5, 6, 7, 5, 6], 3).tolist() == [7]
    assert banned_by_ngrams([5, 6, 7, 5, 6], 2).tolist() == [7]  # "6 7" seen; "6" is the tail
    assert banned_by_ngrams([5, 6, 7, 5, 8], 3).tolist() == []
    assert banned_by_ngrams([1, 1, 1], 2).tolist() == [1]
    assert banned_by_ngrams([3, 4], 3).tolist() == []
    guard = Guard(no_repeat_ngram_size=3)
    out = guard(np.zeros(10, dtype=np.float32), [5, 6, 7, 5, 6])
    assert np.isneginf(out).nonzero()[0].tolist() == [0, 1, 7]  # <pad>, <unk>, and the repeat


def test_sampling_with_no_repeat_ngrams_never_repeats_one():
    model = tiny(seed=7)
    out = model.generate(TOKENIZER.encode("ab"), 30, temperature=1.0, seed=0, no_repeat_ngram_size=4)
    grams = [tuple(out[i:i + 4]) for i in range(len(out) - 3)]
    assert len(grams) == len(set(grams))


def test_pad_and_unk_are_never_generated():
    model = tiny(vocab=4, seed=8)  # <pad>, <unk> and two others: unguarded, half the draws would be special
    for kwargs in ({"temperature": 3.0, "seed": 1}, {"temperature": 0.0}, {"num_beams": 3}):
        out = model.generate([2, 3], 200 if "seed" in kwargs else 20, **kwargs)
        assert 0 not in out and 1 not in out


@pytest.mark.parametrize("kwargs, message", [
    ({"num_beams": 0}, "num_beams"),
    ({"num_beams": 2, "num_return_sequences": 3}, "num_return_sequences"),
    ({"stop": "paragraph", "tokenizer": TOKENIZER}, "stop must be"),
    ({"stop": "line"}, "needs the tokenizer"),
    ({"repetition_penalty": 0.0}, "repetition_penalty"),
    ({"no_repeat_ngram_size": -1}, "no_repeat_ngram_size"),
    ({"length_penalty": float("inf")}, "length_penalty"),
])
def test_invalid_decoding_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny().generate([2, 3], 5, **kwargs)


# ----------------------------------------------------------------------------- the cache and the weights
def test_kv_cache_write_and_reorder():
    from tinytorch.nn.attention import KVCache

    cache = KVCache(n_layer=2, batch=3, n_head=1, head_dim=2, max_len=4)
    k = np.arange(6, dtype=np.float32).reshape(3, 1, 1, 2)  # rows 0, 1, 2 hold [0 1], [2 3], [4 5]
    keys, values = cache.write(1, 0, k, -k)
    assert keys.shape == (3, 1, 1, 2) and np.array_equal(values, -k)
    cache.advance(1)
    cache.reorder([2, 2, 0])  # beams: row 2 twice, then row 0
    assert cache.keys[1][:, 0, 0].tolist() == [[4, 5], [4, 5], [0, 1]]
    cache.reorder([1])  # one beam left: the batch shrinks
    assert cache.keys[1].shape == (1, 1, 4, 2) and cache.values[1][0, 0, 0].tolist() == [-4, -5]
    with pytest.raises(ValueError, match="holds 4 positions"):
        cache.write(0, 3, np.zeros((1, 1, 2, 2), dtype=np.float32), np.zeros((1, 1, 2, 2), dtype=np.float32))


def test_attention_weights_are_the_same_through_the_cache_and_the_training_path():
    model = tiny(n_positions=40)
    ids = np.array([TOKENIZER.encode("ab ba\nab  a b\nba ab b a\n aab b ba a ba")])  # 38 ids: two query blocks
    with tinytorch.no_grad():
        logits, direct = model(ids, output_attentions=True)
        cached_logits, cached = model(ids, model.new_cache(), output_attentions=True)
    np.testing.assert_allclose(cached_logits.data, logits.data, atol=1e-4)
    for a, b in zip(direct, cached):
        assert a.shape == (1, 2, ids.shape[1], ids.shape[1])
        np.testing.assert_allclose(a, b, atol=1e-5)
        np.testing.assert_allclose(a.sum(-1), 1.0, atol=1e-5)
        assert not np.triu(a[0, 0], 1).any()  # nothing from the future
