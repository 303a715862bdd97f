"""tinytorch against PyTorch and transformers: the same GPT-2 must give the same numbers.

CI installs torch and transformers (`make interop`); without them these tests skip, saying so.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch not installed: `make interop` adds it")
transformers = pytest.importorskip("transformers", reason="transformers not installed: `make interop` adds it")

from tinytorch.nn import functional as F  # noqa: E402
from tinytorch.optim import AdamW, clip_grad_norm_  # noqa: E402

from conftest import tiny_gpt  # noqa: E402


def hf_gpt2(model, dtype):
    """transformers' GPT2LMHeadModel with the same config and weights as a tinytorch GPT."""
    c = model.config
    config = transformers.GPT2Config(
        vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
        n_head=c.n_head, activation_function="gelu_new", layer_norm_epsilon=c.layer_norm_epsilon,
        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, tie_word_embeddings=True,
        bos_token_id=None, eos_token_id=None,
    )
    hf = transformers.GPT2LMHeadModel(config).to(dtype)
    state = {k: torch.tensor(np.array(v)) for k, v in model.state_dict().items()}
    missing, unexpected = hf.load_state_dict(state, strict=False)
    assert not unexpected and all(k == "lm_head.weight" or k.endswith("attn.bias") for k in missing)
    hf.tie_weights()
    return hf.eval()


@pytest.mark.parametrize("dtype, rtol", [(np.float64, 1e-5), (np.float32, 1e-4)])
def test_logits_loss_and_gradients_equal_transformers(dtype, rtol):
    tdtype = torch.float64 if dtype == np.float64 else torch.float32
    model = tiny_gpt(dtype, n_embd=16, n_head=4, vocab_size=13)
    hf = hf_gpt2(model, tdtype)
    ids = np.random.default_rng(0).integers(0, 13, (3, 9))
    x, y = ids[:, :-1], ids[:, 1:]

    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out = hf(torch.tensor(x), labels=None)
    hf_loss = torch.nn.functional.cross_entropy(out.logits.reshape(-1, 13), torch.tensor(y).reshape(-1))
    hf_loss.backward()

    scale = np.abs(out.logits.detach().numpy()).max()
    np.testing.assert_allclose(logits.data, out.logits.detach().numpy(), rtol=rtol, atol=rtol * scale)
    assert loss.item() == pytest.approx(hf_loss.item(), rel=rtol)
    hf_params = dict(hf.named_parameters())
    for name, p in model.named_parameters():
        expected = hf_params[name].grad.numpy()
        np.testing.assert_allclose(p.grad, expected, rtol=rtol, atol=rtol * np.abs(expected).max(), err_msg=name)


def test_layer_norm_linear_matches_torch():
    """The fused LayerNorm + Linear (affine folded into the weight) against torch's layer_norm then
    linear, float32: output and the gradients of all five inputs."""
    rng = np.random.default_rng(0)
    arrays = [(rng.standard_normal(s) * k + m).astype(np.float32)
              for s, k, m in [((4, 16, 24), 2.0, 0.5), ((24,), 1.0, 1.0), ((24,), 0.5, 0.0), ((24, 40), 0.2, 0.0), ((40,), 0.1, 0.0)]]
    grad = rng.standard_normal((4, 16, 40)).astype(np.float32)
    from tinytorch import Tensor

    ours = [Tensor(a, requires_grad=True) for a in arrays]
    y = F.layer_norm_linear(*ours)
    y.backward(grad)
    theirs = [torch.tensor(a, requires_grad=True) for a in arrays]
    x, ln_w, ln_b, w, b = theirs
    ref = torch.nn.functional.linear(torch.nn.functional.layer_norm(x, (24,), ln_w, ln_b, 1e-5), w.T, b)
    ref.backward(torch.tensor(grad))
    np.testing.assert_allclose(y.data, ref.detach().numpy(), rtol=1e-4, atol=1e-5)
    for mine, t in zip(ours, theirs):
        np.testing.assert_allclose(mine.grad, t.grad.numpy(), rtol=1e-4, atol=1e-4)


def test_adamw_with_clipping_matches_torch_step_by_step():
    rng = np.random.default_rng(1)
    shapes = [(4, 3), (3,), (2, 5)]
    values = [rng.standard_normal(s) for s in shapes]
    from tinytorch.nn import Parameter

    ours = [Parameter(v.copy()) for v in values]
    theirs = [torch.tensor(v.copy(), requires_grad=True) for v in values]
    groups = [{"params": ours[:1] + ours[2:], "weight_decay": 0.1}, {"params": ours[1:2], "weight_decay": 0.0}]
    opt = AdamW(groups, lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    torch_opt = torch.optim.AdamW(
        [{"params": theirs[:1] + theirs[2:], "weight_decay": 0.1}, {"params": theirs[1:2], "weight_decay": 0.0}],
        lr=0.05, betas=(0.9, 0.95), eps=1e-8)
    for step in range(25):
        grads = [rng.standard_normal(s) * (5 if step % 3 == 0 else 0.1) for s in shapes]
        for p, t, g in zip(ours, theirs, grads):
            p.grad, t.grad = g.copy(), torch.tensor(g.copy())
        norm = clip_grad_norm_(ours, 1.0)
        torch_norm = torch.nn.utils.clip_grad_norm_(theirs, 1.0)
        assert norm == pytest.approx(torch_norm.item(), rel=1e-12)
        opt.set_lr(0.05 * (1 - step / 30))
        for group in torch_opt.param_groups:
            group["lr"] = 0.05 * (1 - step / 30)
        opt.step()
        torch_opt.step()
        for p, t in zip(ours, theirs):
            np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)


def test_sgd_momentum_and_adam_match_torch():
    from tinytorch.nn import Parameter
    from tinytorch.optim import SGD, Adam

    rng = np.random.default_rng(2)
    for ours_cls, torch_cls, kw in [(SGD, torch.optim.SGD, {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
                                    (Adam, torch.optim.Adam, {"lr": 0.01, "weight_decay": 0.01})]:
        v = rng.standard_normal((3, 4))
        p, t = Parameter(v.copy()), torch.tensor(v.copy(), requires_grad=True)
        opt, topt = ours_cls([p], **kw), torch_cls([t], **kw)
        for _ in range(10):
            g = rng.standard_normal((3, 4))
            p.grad, t.grad = g.copy(), torch.tensor(g)
            opt.step()
            topt.step()
        np.testing.assert_allclose(p.data, t.detach().numpy(), rtol=1e-10, atol=1e-12)
