"""The GPT against the gates: finite differences, causality, padding, caching, overfitting."""

import numpy as np
import pytest

import tinytorch
from tinytorch import Tensor
from tinytorch.gradcheck import numerical_grad
from tinytorch.nn import GPT, GPTConfig
from tinytorch.nn import functional as F
from tinytorch.optim import AdamW
from tinytorch.text import CharTokenizer

from conftest import tiny_gpt


def batch(rng, config, B=2, T=None):
    T = T or config.n_positions
    return rng.integers(0, config.vocab_size, (B, T + 1))


def test_state_dict_uses_gpt2_names_and_shapes():
    model = tiny_gpt()
    state = model.state_dict()
    C = 8
    assert list(state)[:2] == ["transformer.wte.weight", "transformer.wpe.weight"]
    assert state["transformer.h.1.attn.c_attn.weight"].shape == (C, 3 * C)
    assert state["transformer.h.0.mlp.c_fc.weight"].shape == (C, 4 * C)
    assert state["transformer.h.0.mlp.c_proj.weight"].shape == (4 * C, C)
    assert "transformer.ln_f.bias" in state and "lm_head.weight" not in state  # tied to wte
    assert len(state) == 2 + 2 * 12 + 2


def test_loss_and_every_parameter_gradient_match_finite_differences(rng):
    model = tiny_gpt(np.float64)
    data = batch(rng, model.config, T=6)
    x, y = data[:, :-1], data[:, 1:]

    def loss_value():
        return F.cross_entropy(model(x), y).item()

    loss = F.cross_entropy(model(x), y)
    loss.backward()
    assert loss.item() == pytest.approx(np.log(11), rel=0.05)  # a fresh model is near uniform
    for name, p in model.named_parameters():
        def f(values, p=p):
            saved = p.data.copy()
            p.data[...] = values
            out = loss_value()
            p.data[...] = saved
            return out

        expected = numerical_grad(f, p.data.copy())
        np.testing.assert_allclose(p.grad, expected, rtol=1e-5, atol=1e-8, err_msg=name)
        # attention must get a real share of the gradient (the predecessor's got ~1e-6 of it)
        assert np.abs(expected).max() > 1e-4, name


def test_changing_future_tokens_leaves_past_logits_unchanged(rng):
    model = tiny_gpt()
    ids = rng.integers(0, 11, (3, 8))
    base = model(ids).data
    for t in range(7):
        changed = ids.copy()
        changed[:, t + 1:] = rng.integers(0, 11, (3, 7 - t))
        logits = model(changed).data
        np.testing.assert_allclose(logits[:, :t + 1], base[:, :t + 1], atol=1e-6)
        assert not np.allclose(logits[:, t + 1:], base[:, t + 1:], atol=1e-6)  # the future does matter


def test_padding_targets_contribute_nothing(rng):
    model = tiny_gpt(np.float64)
    tok = CharTokenizer("abcdefghi")
    assert tok.vocab_size == 11 and tok.pad_id != tok.unk_id
    short = tok.encode("abcab")
    ids = np.array([short + [tok.pad_id] * 3])
    targets = np.array([short[1:] + [-100] * 3])  # the pad positions are ignored
    loss = F.cross_entropy(model(ids[:, :-1]), targets)
    loss.backward()
    grads = {n: p.grad.copy() for n, p in model.named_parameters()}
    model.zero_grad()
    reference = F.cross_entropy(model(np.array([short[:-1]])), np.array([short[1:]]))
    reference.backward()
    assert loss.item() == pytest.approx(reference.item(), rel=1e-12)
    for n, p in model.named_parameters():
        if n == "transformer.wpe.weight":  # positions past the text get nothing, the rest match
            np.testing.assert_allclose(grads[n][4:], 0.0)
            np.testing.assert_allclose(grads[n][:4], p.grad[:4], rtol=1e-9, atol=1e-12)
        else:
            np.testing.assert_allclose(grads[n], p.grad, rtol=1e-9, atol=1e-12, err_msg=n)


def test_tiny_gpt_overfits_one_batch(rng):
    model = tiny_gpt(n_positions=16, n_embd=32, vocab_size=11)
    data = batch(rng, model.config, B=4, T=16)
    opt = AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(300):
        loss = F.cross_entropy(model(data[:, :-1]), data[:, 1:])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05  # from log(11) = 2.4: the batch is memorized


def test_kv_cache_generates_exactly_what_recomputing_the_window_gives(rng):
    model = tiny_gpt(n_positions=8)
    prompt = list(rng.integers(0, 11, 3))
    for kwargs in ({"temperature": 0.0}, {"temperature": 1.0, "seed": 7}, {"temperature": 0.8, "top_k": 3, "seed": 1}):
        cached = model.generate(prompt, 20, use_cache=True, **kwargs)  # runs past the window of 8
        recomputed = model.generate(prompt, 20, use_cache=False, **kwargs)
        assert cached == recomputed and len(cached) == 23


def test_cached_logits_equal_full_forward(rng):
    model = tiny_gpt()
    ids = rng.integers(0, 11, (1, 8))
    full = model(ids).data
    cache = model.new_cache()
    with tinytorch.no_grad():
        first = model(ids[:, :5], cache).data
        rest = [model(ids[:, t:t + 1], cache).data for t in range(5, 8)]
    np.testing.assert_allclose(np.concatenate([first] + rest, axis=1), full, rtol=1e-5, atol=1e-6)


def test_greedy_is_deterministic_and_seed_makes_sampling_reproducible(rng):
    model = tiny_gpt()
    a = model.generate([1, 2], 15, temperature=0.0)
    assert a == model.generate([1, 2], 15, temperature=0.0)
    s1 = model.generate([1, 2], 30, temperature=1.5, seed=5)
    assert s1 == model.generate([1, 2], 30, temperature=1.5, seed=5)
    assert s1 != model.generate([1, 2], 30, temperature=1.5, seed=6)


def test_sampling_filters():
    from tinytorch.generate import next_token_probs

    logits = np.log(np.array([0.5, 0.3, 0.15, 0.05]))
    np.testing.assert_allclose(next_token_probs(logits, 1.0, top_k=2), [0.625, 0.375, 0, 0])
    np.testing.assert_allclose(next_token_probs(logits, 1.0, top_p=0.7), [0.625, 0.375, 0, 0])
    np.testing.assert_allclose(next_token_probs(logits, 1.0, top_p=0.5), [1, 0, 0, 0])
    np.testing.assert_allclose(next_token_probs(logits, 0.0), [1, 0, 0, 0])
    hot = next_token_probs(logits, 2.0)
    np.testing.assert_allclose(hot, np.sqrt([0.5, 0.3, 0.15, 0.05]) / np.sqrt([0.5, 0.3, 0.15, 0.05]).sum())


def test_stop_sequence_ends_generation():
    model = tiny_gpt()
    free = model.generate([1], 12, temperature=0.0)
    stop = free[3:5]
    out = model.generate([1], 12, temperature=0.0, stop=[stop])
    assert out[-2:] == stop and len(out) <= 5


@pytest.mark.parametrize("kwargs, message", [
    ({"max_new_tokens": -1}, "max_new_tokens"),
    ({"max_new_tokens": 5, "temperature": -1}, "temperature"),
    ({"max_new_tokens": 5, "temperature": float("nan")}, "temperature"),
    ({"max_new_tokens": 5, "top_k": 0}, "top_k"),
    ({"max_new_tokens": 5, "top_p": 1.5}, "top_p"),
])
def test_invalid_generation_arguments_raise_value_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        tiny_gpt().generate([1, 2], **kwargs)


def test_invalid_prompt_ids_raise_value_error():
    with pytest.raises(ValueError, match="at least one"):
        tiny_gpt().generate([], 3)
    with pytest.raises(ValueError, match=r"\[0, 11\)"):
        tiny_gpt().generate([3, 11], 3)


def test_too_long_input_is_a_clear_error():
    with pytest.raises(ValueError, match="context window of 8"):
        tiny_gpt()(np.zeros((1, 9), dtype=np.int64))


def test_load_state_dict_names_every_problem():
    model = tiny_gpt()
    state = dict(model.state_dict())
    state["transformer.h.0.attn.c_attn.weight"] = np.zeros((8, 8), np.float32)
    del state["transformer.ln_f.bias"]
    state["lm_head.weight"] = np.zeros((11, 8), np.float32)
    with pytest.raises(ValueError) as err:
        model.load_state_dict(state)
    text = str(err.value)
    assert "transformer.h.0.attn.c_attn.weight" in text and "(8, 8)" in text
    assert "missing: transformer.ln_f.bias" in text and "unexpected: lm_head.weight" in text


def test_load_state_dict_round_trip_gives_identical_logits(rng):
    a, b = tiny_gpt(seed=1), tiny_gpt(seed=2)
    ids = rng.integers(0, 11, (2, 8))
    assert not np.allclose(a(ids).data, b(ids).data)
    b.load_state_dict({k: v.copy() for k, v in a.state_dict().items()})
    np.testing.assert_array_equal(a(ids).data, b(ids).data)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of n_head"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="positive integer"):
        GPTConfig(n_layer=0)
    assert GPTConfig.from_dict({"n_embd": 16, "model_type": "gpt2"}).n_embd == 16


def test_tensor_input_is_accepted():
    model = tiny_gpt()
    ids = np.array([[1, 2, 3]])
    np.testing.assert_array_equal(model(Tensor(ids)).data, model(ids).data)
