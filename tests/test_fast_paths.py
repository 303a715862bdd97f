"""Gates for the performance paths: each fast path against a plain computation of the same thing.

Fused attention (query blocks, no max shift below the Cauchy-Schwarz limit, the shift above
it), gradients written into the optimizer's flat buffer, flat-buffer clipping, GELU's overflow, malloc tuning.
"""

import warnings

import numpy as np
import pytest

import tinytorch
from tinytorch import Tensor
from tinytorch import fused, kernels
from tinytorch.gradcheck import gradcheck
from tinytorch.nn import functional as F
from tinytorch.optim import SGD, AdamW, clip_grad_norm_

from conftest import textbook_attention, tiny_gpt


def reference_attention(qkv: np.ndarray, n_head: int, grad: np.ndarray):
    """Causal attention head by head, the textbook way from primitives; (y, grad_qkv)."""
    B, T, C3 = qkv.shape
    C = C3 // 3
    D = C // n_head
    x = Tensor(qkv, requires_grad=True)
    parts = [x[:, :, i * C:(i + 1) * C].reshape(B, T, n_head, D).transpose(1, 2) for i in range(3)]
    y = textbook_attention(*parts, causal=True).transpose(1, 2).reshape(B, T, C)
    (y * Tensor(grad)).sum().backward()
    return y.data, x.grad


def fused_attention(qkv: np.ndarray, n_head: int, grad: np.ndarray):
    x = Tensor(qkv, requires_grad=True)
    y = fused.FusedCausalSelfAttention.apply(x, n_head=n_head)
    y.backward(grad)
    return y.data, x.grad


@pytest.fixture(params=["bound", "max"])
def shift(request, monkeypatch):
    """Run a test with the Cauchy-Schwarz bound deciding the shift, and with the plain max shift."""
    monkeypatch.setattr(kernels, "_BOUND_MIN_SCORES", 0 if request.param == "bound" else 1 << 62)
    return request.param


@pytest.mark.parametrize("T", [1, 5, 32, 33, 70, 128])
def test_fused_attention_equals_textbook_attention_across_query_blocks(T, shift):
    rng = np.random.default_rng(T)
    B, H, D = 2, 3, 4
    qkv = rng.standard_normal((B, T, 3 * H * D)) * 2.0
    grad = rng.standard_normal((B, T, H * D))
    y, g = fused_attention(qkv, H, grad)
    y_ref, g_ref = reference_attention(qkv, H, grad)
    np.testing.assert_allclose(y, y_ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(g, g_ref, rtol=1e-10, atol=1e-12)


def test_fused_attention_gradient_matches_finite_differences_over_two_blocks(shift):
    rng = np.random.default_rng(0)
    qkv = rng.standard_normal((1, kernels._QUERY_BLOCK + 7, 3 * 2 * 2))
    gradcheck(lambda x: fused.FusedCausalSelfAttention.apply(x, n_head=2), qkv)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fused_attention_shifts_by_the_max_when_scores_may_overflow(dtype, shift):
    # |q| |k| / sqrt(D) = 5e5 is far above the no-shift limit, so the blocks take the max shift;
    # queries along one axis, keys mostly along another keep the actual scores of order 1
    B, T, H, D = 1, 40, 1, 4
    rng = np.random.default_rng(1)
    q = np.zeros((B, T, D))
    q[..., 0] = 1e3
    k = np.zeros((B, T, D))
    k[..., 1] = 1e3
    k[..., 0] = rng.standard_normal((B, T)) * 1e-3  # scores of order 1: the softmax is not flat
    v = rng.standard_normal((B, T, D))
    qkv = np.concatenate([q, k, v], axis=-1).astype(dtype)
    grad = rng.standard_normal((B, T, H * D)).astype(dtype)
    y, g = fused_attention(qkv, H, grad)
    y_ref, g_ref = reference_attention(qkv.astype(np.float64), H, grad.astype(np.float64))
    assert np.isfinite(y).all() and np.isfinite(g).all()
    tol = 1e-4 if dtype == np.float32 else 1e-10
    np.testing.assert_allclose(y, y_ref, rtol=tol, atol=tol)
    np.testing.assert_allclose(g, g_ref, rtol=tol, atol=tol * np.abs(g_ref).max())


def test_fused_attention_without_shift_is_exact_up_to_the_limit(shift):
    # scores up to ~40 in float32, just under the limit of 43 where no shift is taken: exp(40)
    # is 2e17, fine, and the weights must still match float64
    rng = np.random.default_rng(4)
    B, T, H, D = 2, 64, 1, 4
    q = np.zeros((B, T, D))
    q[..., 0] = 12.6
    k = np.zeros((B, T, D))
    k[..., 0] = rng.uniform(-6.3, 6.3, (B, T))
    v = rng.standard_normal((B, T, D))
    qkv = np.concatenate([q, k, v], axis=-1).astype(np.float32)
    bound = 12.6 * np.abs(k[..., 0]).max() / np.sqrt(D)  # |q| max|k| / sqrt(D)
    assert 35 < bound < kernels.exp_limit(np.float32, T)
    grad = rng.standard_normal((B, T, D)).astype(np.float32)
    y, g = fused_attention(qkv, H, grad)
    y_ref, g_ref = reference_attention(qkv.astype(np.float64), H, grad.astype(np.float64))
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g, g_ref, rtol=1e-3, atol=1e-4 * np.abs(g_ref).max())


def test_fused_attention_in_float32_is_close_to_float64(shift):
    rng = np.random.default_rng(2)
    qkv = rng.standard_normal((3, 128, 3 * 4 * 8)).astype(np.float32) * 3
    grad = rng.standard_normal((3, 128, 32)).astype(np.float32)
    y, g = fused_attention(qkv, 4, grad)
    y_ref, g_ref = reference_attention(qkv.astype(np.float64), 4, grad.astype(np.float64))
    assert y.dtype == g.dtype == np.float32
    np.testing.assert_allclose(y, y_ref, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(g, g_ref, rtol=1e-3, atol=1e-4 * np.abs(g_ref).max())


def test_gelu_saturates_without_overflow_warnings():
    x = np.array([-1e4, -300.0, -50.0, 0.0, 50.0, 1e4], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = Tensor(x, requires_grad=True)
        y = F.gelu(t)
        y.sum().backward()
    np.testing.assert_array_equal(y.data, [0.0, 0.0, 0.0, 0.0, 50.0, 1e4])
    np.testing.assert_array_equal(t.grad, [0.0, 0.0, 0.0, 0.5, 1.0, 1.0])


@pytest.mark.parametrize("block", [5, 12, 1 << 16])  # rows of 5 elements: a row, 2 rows, all rows
def test_gelu_in_row_blocks_equals_the_formula_and_finite_differences(block, monkeypatch, rng):
    monkeypatch.setattr(kernels, "_BLOCK_ELEMENTS", block)
    x = rng.standard_normal((3, 7, 5)) * 3  # 21 rows of 5: the last block is short
    assert len(kernels.row_blocks(21, 5)) == {5: 21, 12: 11, 1 << 16: 1}[block]
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(F.gelu(Tensor(x)).data, expected, rtol=1e-12, atol=1e-12)
    gradcheck(F.gelu, x)


# ----------------------------------------------------------------------------- LayerNorm + Linear
@pytest.mark.parametrize("with_bias", [True, False])
def test_layer_norm_linear_equals_layer_norm_then_linear(rng, with_bias):
    """The fused op (the affine folded into the matmul) gives the unfused composition's output and
    the gradients of all five inputs; and float64 finite differences."""
    x, ln_w, ln_b = rng.standard_normal((2, 7, 6)) * 3 + 1, rng.standard_normal(6), rng.standard_normal(6)
    w, b = rng.standard_normal((6, 5)), (rng.standard_normal(5) if with_bias else None)
    grad = rng.standard_normal((2, 7, 5))

    def run(fused_op):
        ts = [Tensor(a, requires_grad=True) for a in (x, ln_w, ln_b, w)] + ([Tensor(b, requires_grad=True)] if with_bias else [])
        bias = ts[4] if with_bias else None
        y = (F.layer_norm_linear(*ts[:4], bias) if fused_op else F.linear(F.layer_norm(*ts[:3]), ts[3], bias))
        y.backward(grad)
        return [y.data] + [t.grad for t in ts]

    for got, want in zip(run(True), run(False)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    if with_bias:
        gradcheck(lambda *a: F.layer_norm_linear(*a), x, ln_w, ln_b, w, b)
    else:
        gradcheck(lambda *a: F.layer_norm_linear(*a), x, ln_w, ln_b, w)


def test_gpt_blocks_fuse_their_layer_norms_into_the_next_matmul(rng):
    """A GPT's forward runs ln_1 + c_attn, ln_2 + c_fc and ln_f + head as FusedLayerNormLinear
    nodes, and no separate LayerNorm."""
    model = tiny_gpt(np.float64)
    loss = loss_of(model, rng.integers(0, 11, (2, 9)))
    names, stack, seen = [], [loss], set()
    while stack:
        node = stack.pop()
        if id(node) in seen or node._ctx is None:
            continue
        seen.add(id(node))
        names.append(type(node._ctx).__name__)
        stack.extend(p for p in node._ctx.parents if isinstance(p, Tensor))
    assert names.count("FusedLayerNormLinear") == 2 * model.config.n_layer + 1
    assert "FusedLayerNorm" not in names


# ----------------------------------------------------------------------------- flat gradients
def loss_of(model, data):
    return F.cross_entropy(model(data[:, :-1]), data[:, 1:])


def test_backward_writes_parameter_gradients_into_the_optimizer_buffer(rng):
    model = tiny_gpt(np.float64)
    data = rng.integers(0, 11, (2, 9))
    loss_of(model, data).backward()
    expected = {n: p.grad.copy() for n, p in model.named_parameters()}  # no optimizer: fresh arrays
    model.zero_grad()
    opt = AdamW(model.optimizer_groups(0.1), lr=1e-3)
    loss_of(model, data).backward()
    buffers = [g["grad"] for g in opt.param_groups]
    for name, p in model.named_parameters():
        assert any(p.grad.base is b for b in buffers), name  # a view of the flat buffer
        np.testing.assert_array_equal(p.grad, expected[name], err_msg=name)
    # a second backward without zero_grad accumulates, in place
    loss_of(model, data).backward()
    for name, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, 2 * expected[name], rtol=1e-14, err_msg=name)


def test_flat_gradient_training_equals_gathered_gradient_training(rng):
    """Two copies of a model, one trained through the flat buffer, one with every gradient set by
    hand as a separate array (the gather path): identical weights after several steps, also
    when a step leaves some parameters without a gradient (stale buffer slices must count as 0)."""
    fast, slow = tiny_gpt(np.float64, seed=3), tiny_gpt(np.float64, seed=3)
    opt_fast = AdamW(fast.optimizer_groups(0.1), lr=1e-2)
    opt_slow = AdamW(slow.optimizer_groups(0.1), lr=1e-2)
    for step in range(6):
        data = rng.integers(0, 11, (2, 9))
        for model, opt in ((fast, opt_fast), (slow, opt_slow)):
            opt.zero_grad()
            if step == 3:  # only the head/embedding path: the blocks get no gradient at all
                logits = F.linear(model.transformer.wte(data[:, :-1]), model.transformer.wte.weight.T)
                loss = F.cross_entropy(logits, data[:, 1:])
            else:
                loss = loss_of(model, data)
            loss.backward()
            if model is slow:  # move every gradient out of the buffer
                for p in model.parameters():
                    if p.grad is not None:
                        p.grad = p.grad.copy()
            params = [p for g in opt.param_groups for p in g["params"]]
            norm = clip_grad_norm_(params, 0.5)
            opt.step()
        assert norm > 0
    for (name, a), b in zip(fast.named_parameters(), slow.parameters()):
        # atol: c_attn's key bias gets a gradient of exactly 0 in exact arithmetic (softmax ignores
        # a shift shared by a whole row), so its entries are rounding noise of order 1e-15
        np.testing.assert_allclose(a.data, b.data, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("cls", ["AdamW", "Adam"])
def test_adam_in_cache_blocks_equals_the_textbook_update(rng, cls):
    """The update runs over the flat buffer in blocks (optim.optimizer_blocks) with sqrt(bias2)
    folded into eps and the step size: the same numbers as the textbook formula, for a buffer of
    several blocks and a partial last one, both groups, gradients small enough that eps counts."""
    from tinytorch import optim
    from tinytorch.nn import Parameter

    big, small = Parameter(rng.standard_normal((300, 250))), Parameter(rng.standard_normal(7))
    assert len(optim.optimizer_blocks(big.size)) >= 3 and big.size % optim._OPTIMIZER_BLOCK
    lr, (b1, b2), eps = 0.01, (0.9, 0.95), 1e-8
    opt = getattr(optim, cls)([{"params": [big], "weight_decay": 0.1}, {"params": [small], "weight_decay": 0.0}],
                              lr=lr, betas=(b1, b2), eps=eps)
    ref = [(big.data.copy(), 0.1), (small.data.copy(), 0.0)]
    m = [np.zeros_like(p) for p, _ in ref]
    v = [np.zeros_like(p) for p, _ in ref]
    for t in range(1, 5):
        grads = [rng.standard_normal(big.shape) * 1e-7, rng.standard_normal(small.shape) * 1e-3]
        big.grad, small.grad = grads[0].copy(), grads[1].copy()
        opt.step()
        for i, ((p, wd), g) in enumerate(zip(ref, grads)):
            if cls == "AdamW":
                p *= 1 - lr * wd
            else:
                g = g + wd * p
            m[i] = b1 * m[i] + (1 - b1) * g
            v[i] = b2 * v[i] + (1 - b2) * g * g
            p -= lr * (m[i] / (1 - b1**t)) / (np.sqrt(v[i] / (1 - b2**t)) + eps)
    np.testing.assert_allclose(big.data, ref[0][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(small.data, ref[1][0], rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(opt.param_groups[0]["state"]["exp_avg_sq"], v[0].ravel(), rtol=1e-12)


def test_clip_grad_norm_flat_path_equals_per_array_norm(rng):
    model = tiny_gpt(np.float64)
    opt = SGD(model.parameters(), lr=0.1)
    loss_of(model, rng.integers(0, 11, (2, 9))).backward()
    grads = [p.grad.copy() for p in model.parameters()]
    expected = np.sqrt(sum((g * g).sum() for g in grads))
    norm = clip_grad_norm_(model.parameters(), 1e-3)
    assert norm == pytest.approx(expected, rel=1e-12)
    scale = 1e-3 / (expected + 1e-6)
    for p, g in zip(model.parameters(), grads):
        np.testing.assert_allclose(p.grad, g * scale, rtol=1e-12)
    # a subset of the parameters: only those are measured and scaled
    params = model.parameters()
    before = [p.grad.copy() for p in params]
    expected = np.sqrt(sum((g * g).sum() for g in before[:3]))
    assert clip_grad_norm_(params[:3], 1e-9) == pytest.approx(expected, rel=1e-12)
    for p, g in zip(params[:3], before[:3]):
        np.testing.assert_allclose(p.grad, g * (1e-9 / (expected + 1e-6)), rtol=1e-12)
    for p, g in zip(params[3:], before[3:]):
        np.testing.assert_array_equal(p.grad, g)
    assert opt  # keeps the optimizer (and its buffer) alive for the test


def test_casting_the_model_after_creating_the_optimizer_keeps_gradients_exact(rng):
    model = tiny_gpt(np.float32)
    opt = AdamW(model.parameters(), lr=1e-3)
    model.to(np.float64)
    loss_of(model, rng.integers(0, 11, (2, 9))).backward()
    assert all(p.grad.dtype == np.float64 for p in model.parameters())
    opt.step()  # re-flattens onto the float64 values
    assert all(p.data.dtype == np.float64 for p in model.parameters())


def test_tune_malloc_is_safe_to_call_twice():
    import sys

    from tinytorch import memory

    first, second = memory.tune_malloc(), memory.tune_malloc()
    assert first == second
    if sys.platform.startswith("linux") and first:
        assert memory.malloc_settings()["mmap_threshold"] == memory.DEFAULT_MMAP_THRESHOLD
    assert memory.rss_bytes() >= 0 and memory.peak_rss_bytes() >= 0


# ----------------------------------------------------------------------------- generation
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
def test_decoder_logits_equal_the_full_forward_pass(rng, dtype, tol):
    from tinytorch.generate import Decoder

    model = tiny_gpt(dtype, seed=5).eval()
    ids = rng.integers(0, 11, (1, 8))
    full = model(ids).data[0]  # (8, V)
    for primed in (0, 3):  # from an empty cache, and after the module path filled 3 positions
        cache = model.new_cache()
        with tinytorch.no_grad():
            steps = [model(ids[:, :primed], cache).data[0]] if primed else []
        decoder = Decoder(model)
        steps += [decoder.logits([int(ids[0, t])], cache) for t in range(primed, 8)]
        got = np.concatenate(steps)
        np.testing.assert_allclose(got, full, rtol=tol, atol=tol * np.abs(full).max())
        assert cache.length == 8
        with pytest.raises(ValueError, match="holds 8 positions"):
            decoder.logits([1], cache)


def test_generation_follows_the_documented_window_policy(rng):
    """Greedy decoding against an independent loop: the context is ids[start:], and when it would
    exceed the window it restarts from the last refill_keep(window) ids; a prompt that fills the
    window is read whole for the first step, and the steps after it go on from its last 3/4."""
    from tinytorch.generate import refill_keep

    model = tiny_gpt(n_positions=8)
    assert refill_keep(8) == 6 and refill_keep(64) == 48 and refill_keep(128) == 96 and refill_keep(1) == 1
    for prompt_len in (2, 8, 11):
        prompt = [int(i) for i in rng.integers(0, 11, prompt_len)]
        ids, lengths = list(prompt), []
        start = prompt_len - refill_keep(8) if prompt_len >= 8 else 0  # where the cache starts
        for step in range(25):
            if len(ids) - start > 8:
                start = len(ids) - refill_keep(8)
            context = ids[-8:] if step == 0 else ids[start:]  # the first step reads a whole window
            lengths.append(len(context))
            ids.append(int(np.argmax(model(np.array([context])).data[0, -1])))
        assert max(lengths) == 8 and min(lengths) == min(prompt_len, 6)  # never below 3/4 of the window
        assert model.generate(prompt, 25, temperature=0.0, use_cache=True) == ids
        assert model.generate(prompt, 25, temperature=0.0, use_cache=False) == ids


def test_sample_draws_exactly_what_generator_choice_draws():
    from tinytorch.generate import sample

    rng = np.random.default_rng(0)
    ours, theirs = np.random.default_rng(7), np.random.default_rng(7)
    for _ in range(500):
        probs = rng.random(98) ** 6
        probs[rng.integers(0, 98, 30)] = 0.0
        probs /= probs.sum()
        assert sample(ours, probs) == theirs.choice(98, p=probs)


def test_set_blas_threads_round_trip():
    from tinytorch import threads

    before = threads.blas_threads()
    if before is None:  # not an OpenBLAS we can reach: the setter says so and does nothing
        assert threads.set_blas_threads(1) is False
        return
    try:
        assert threads.set_blas_threads(1) and threads.blas_threads() == 1
        a = np.random.default_rng(0).standard_normal((300, 300))
        np.testing.assert_allclose(a @ a.T, (a @ a.T).T, rtol=1e-12)  # BLAS still works
    finally:
        threads.set_blas_threads(before)
    assert threads.blas_threads() == before
