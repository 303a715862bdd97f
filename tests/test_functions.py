"""Every Function's backward against float64 central differences, at random shapes."""

import numpy as np
import pytest

from tinytorch import Tensor
from tinytorch.gradcheck import gradcheck
from tinytorch.nn import functional as F

R = np.random.default_rng(1)


def randn(*shape):
    return R.standard_normal(shape)


BINARY_SHAPES = [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((2, 1, 4), (3, 1)), ((5,), (2, 5)), ((3, 1), (1, 4))]


@pytest.mark.parametrize("shape_a, shape_b", BINARY_SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_with_broadcasting(op, shape_a, shape_b):
    a, b = randn(*shape_a), randn(*shape_b)
    if op == "div":
        b = np.sign(b) * (np.abs(b) + 0.5)  # keep away from 0
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y,
          "mul": lambda x, y: x * y, "div": lambda x, y: x / y}[op]
    gradcheck(fn, a, b)


def test_scalar_operands_on_either_side():
    gradcheck(lambda x: 2.0 * x - 1.0 / (x * x + 1.0) + (3.0 - x) / 4.0, randn(3, 2))


@pytest.mark.parametrize("shape_a, shape_b", [
    ((3, 4), (4, 5)),            # 2-D
    ((2, 3, 4), (2, 4, 5)),      # batched
    ((2, 3, 3, 4), (4, 2)),      # batch against a shared matrix
    ((2, 1, 3, 4), (3, 4, 2)),   # batch dims broadcast both ways
    ((3, 4), (2, 4, 5)),         # a 2-D left operand against a batch
])
def test_matmul(shape_a, shape_b):
    gradcheck(lambda x, y: x @ y, randn(*shape_a), randn(*shape_b))


@pytest.mark.parametrize("name", ["exp", "log", "sqrt", "tanh", "neg", "pow"])
def test_unary_ops(name):
    x = np.abs(randn(3, 4)) + 0.5
    fn = {"exp": Tensor.exp, "log": Tensor.log, "sqrt": Tensor.sqrt, "tanh": Tensor.tanh,
          "neg": lambda t: -t, "pow": lambda t: t ** 3}[name]
    gradcheck(fn, x)


@pytest.mark.parametrize("axis, keepdims", [(None, False), (0, False), (1, True), ((0, 2), False), (-1, False)])
@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_reductions(op, axis, keepdims):
    gradcheck(lambda x: getattr(x, op)(axis=axis, keepdims=keepdims), randn(2, 3, 4))


def test_max_splits_gradient_between_ties():
    x = Tensor(np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 1.0]]), requires_grad=True)
    x.max(axis=1).sum().backward()
    np.testing.assert_allclose(x.grad, [[0, 0.5, 0.5], [1, 0, 0]])


def test_shape_ops():
    gradcheck(lambda x: x.reshape(4, 6).transpose(0, 1) * 1.0, randn(2, 3, 4))
    gradcheck(lambda x: x.permute(2, 0, 1).reshape(-1), randn(2, 3, 4))
    gradcheck(lambda x: x.T, randn(3, 5))


@pytest.mark.parametrize("index", [
    (slice(None), 1), (Ellipsis, slice(1, 3)), (np.array([0, 2, 0]),), (np.array([1, 1]), slice(None, 2)),
])
def test_indexing_accumulates_repeated_rows(index):
    gradcheck(lambda x: x[index], randn(3, 4))


def test_fused_linear_layer_norm_gelu():
    gradcheck(lambda x, w, b: F.linear(x, w, b), randn(2, 3, 4), randn(4, 5), randn(5))
    gradcheck(lambda x, w: F.linear(x, w), randn(3, 4), randn(4, 2))
    gradcheck(lambda x, w, b: F.layer_norm(x, w, b), randn(2, 3, 6), randn(6), randn(6))
    gradcheck(F.gelu, randn(4, 5) * 3)


def test_gelu_is_gpt2_tanh_form():
    x = np.linspace(-12, 12, 101)
    expected = 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3)))
    np.testing.assert_allclose(F.gelu(Tensor(x)).data, expected, rtol=1e-12, atol=1e-12)


def test_layer_norm_output_is_normalized():
    x = randn(4, 16) * 5 + 3
    y = F.layer_norm(Tensor(x), Tensor(np.ones(16)), Tensor(np.zeros(16))).data
    np.testing.assert_allclose(y.mean(-1), 0, atol=1e-12)
    np.testing.assert_allclose(y.var(-1), 1 / (1 + 1e-5 / x.var(-1)), rtol=1e-9)


def test_softmax_and_log_softmax():
    gradcheck(F.softmax, randn(2, 3, 5))
    gradcheck(F.log_softmax, randn(4, 6))
    x = randn(3, 5)
    expected = np.exp(x) / np.exp(x).sum(-1, keepdims=True)
    np.testing.assert_allclose(F.softmax(Tensor(x)).data, expected, rtol=1e-12)
    np.testing.assert_allclose(F.log_softmax(Tensor(x)).data, np.log(expected), rtol=1e-12)


def test_embedding_gradient_accumulates_repeated_ids():
    ids = np.array([[0, 2, 2], [4, 0, 2]])
    gradcheck(lambda w: F.embedding(ids, w), randn(5, 3))


def test_cross_entropy_matches_hand_computation():
    logits = randn(4, 6)
    targets = np.array([1, 0, 5, 2])
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(4), targets].mean()
    assert F.cross_entropy(Tensor(logits), targets).item() == pytest.approx(expected, rel=1e-12)
    gradcheck(lambda x: F.cross_entropy(x, targets), logits)


@pytest.mark.parametrize("scale", [1.0, 40.0, 1000.0])
def test_cross_entropy_with_and_without_the_max_shift(scale):
    """float32 logits up to kernels.exp_limit (43.7) skip the row max shift, larger ones take it:
    both give the float64 reference's loss and gradient (softmax - one_hot) / N."""
    rng = np.random.default_rng(3)
    logits = np.clip(rng.standard_normal((64, 98)), -1, 1) * scale
    logits[0, 5] = scale  # a row with the extreme value
    targets = rng.integers(0, 98, 64)
    x = Tensor(logits.astype(np.float32), requires_grad=True)
    loss = F.cross_entropy(x, targets)
    loss.backward()
    shifted = logits - logits.max(-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = -log_probs[np.arange(64), targets].mean()
    grad = np.exp(log_probs)
    grad[np.arange(64), targets] -= 1.0
    assert np.isfinite(loss.item()) and loss.item() == pytest.approx(expected, rel=1e-5)
    np.testing.assert_allclose(x.grad, grad / 64, rtol=1e-4, atol=1e-8)


def test_cross_entropy_ignored_targets_count_for_nothing():
    logits = randn(2, 3, 5)
    targets = np.array([[1, -100, 3], [-100, 0, 4]])
    kept = targets != -100
    x = Tensor(logits, requires_grad=True)
    loss = F.cross_entropy(x, targets)
    loss.backward()
    reference = Tensor(logits[kept], requires_grad=True)
    expected = F.cross_entropy(reference, targets[kept])
    expected.backward()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-12)
    assert np.all(x.grad[~kept] == 0.0)
    np.testing.assert_allclose(x.grad[kept], reference.grad, rtol=1e-12)
    gradcheck(lambda z: F.cross_entropy(z, targets), logits)


@pytest.mark.parametrize("causal", [True, False])
def test_textbook_attention_reference(causal):
    """The reference the fused attention is checked against, itself checked by hand."""
    from conftest import textbook_attention

    q, k, v = randn(2, 2, 5, 3), randn(2, 2, 5, 3), randn(2, 2, 5, 3)
    gradcheck(lambda a, b, c: textbook_attention(a, b, c, causal=causal), q, k, v)
    scores = q @ k.swapaxes(-1, -2) / np.sqrt(3)
    if causal:
        scores = np.where(np.triu(np.ones((5, 5), bool), 1), -np.inf, scores)
    weights = np.exp(scores - scores.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    y = textbook_attention(Tensor(q), Tensor(k), Tensor(v), causal=causal).data
    np.testing.assert_allclose(y, weights @ v, rtol=1e-12)


def test_packed_causal_self_attention_matches_per_head_reference():
    from tinytorch import fused, kernels

    B, T, H, D = 2, 4, 2, 3
    qkv = randn(B, T, 3 * H * D)
    gradcheck(lambda x: fused.FusedCausalSelfAttention.apply(x, n_head=H), qkv)
    q, k, v = (qkv[..., i * H * D:(i + 1) * H * D].reshape(B, T, H, D).transpose(0, 2, 1, 3) for i in range(3))
    from conftest import textbook_attention

    heads = textbook_attention(Tensor(q), Tensor(k), Tensor(v)).data  # (B, H, T, D)
    y = fused.FusedCausalSelfAttention.apply(Tensor(qkv), n_head=H).data
    np.testing.assert_allclose(y, heads.transpose(0, 2, 1, 3).reshape(B, T, H * D), rtol=1e-12)


def test_dropout_scales_kept_units_and_passes_gradient_through_them():
    import tinytorch

    tinytorch.manual_seed(3)
    x = Tensor(np.ones((200, 50)), requires_grad=True)
    y = F.dropout(x, 0.25, training=True)
    kept = y.data != 0
    assert 0.7 < kept.mean() < 0.8
    np.testing.assert_allclose(y.data[kept], 1 / 0.75)
    y.sum().backward()
    np.testing.assert_allclose(x.grad, y.data)
    assert F.dropout(x, 0.25, training=False) is x
