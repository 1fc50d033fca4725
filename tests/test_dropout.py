"""melp's CPU dropout (melp.models.dropout) and the attention that uses it on a CPU."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from melp.models import attention as attention_module
from melp.models.attention import Attention, attention_with_cpu_dropout
from melp.models.dropout import LEVELS, Dropout, dropout, dropped, kept


@pytest.mark.parametrize("p", [0.1, 0.5])
def test_cpu_dropout_drops_a_fraction_p_scales_the_rest_and_masks_the_gradient_alike(p):
    torch.manual_seed(0)
    x = torch.rand(64, 128, 64, dtype=torch.float64) + 1.0  # no zeros of its own
    x.requires_grad_(True)
    y = dropout(x, p, training=True)
    dropped = y == 0
    n = dropped.numel()
    # binomial: 6 standard deviations (0.6 % at p 0.1 over 524,288 elements), overall and for each
    # of the four 16-bit lanes of a 64-bit draw (elements 4i + lane): every bit of a draw is random
    assert abs(dropped.double().mean().item() - p) < 6 * (p * (1 - p) / n) ** 0.5
    for lane in range(4):
        share = dropped.flatten()[lane::4].double().mean().item()
        assert abs(share - p) < 6 * (p * (1 - p) / (n / 4)) ** 0.5, (lane, share)
    scale = LEVELS / (LEVELS - round(p * LEVELS))
    assert abs(scale - 1 / (1 - p)) < 1e-4
    assert torch.allclose(y[~dropped], x[~dropped] * scale)
    grad = torch.randn_like(x)
    (x_grad,) = torch.autograd.grad(y, x, grad)
    assert torch.equal(x_grad == 0, dropped)  # the forward's mask, not a fresh draw
    assert torch.allclose(x_grad[~dropped], grad[~dropped] * scale)


def test_cpu_dropout_is_reproducible_for_a_seed_keeps_bf16_and_is_the_identity_in_eval():
    x = torch.randn(4, 50, 256)
    torch.manual_seed(1)
    a = dropout(x, 0.1, training=True)
    torch.manual_seed(1)
    assert torch.equal(a, dropout(x, 0.1, training=True))
    assert not torch.equal(a, dropout(x, 0.1, training=True))
    half = dropout(x.bfloat16(), 0.1, training=True)
    assert half.dtype == torch.bfloat16
    kept = half != 0
    # scaled in fp32, rounded once to bf16
    assert torch.equal(half[kept], (x.bfloat16()[kept].float() * (LEVELS / (LEVELS - round(0.1 * LEVELS)))).bfloat16())
    module = Dropout(0.3).eval()
    assert module(x) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))
    with pytest.raises(ValueError, match="dropout probability"):
        Dropout(1.5)


@pytest.mark.parametrize("causal", [False, True])
def test_attention_with_cpu_dropout_is_sdpa_with_the_weights_dropped(causal, monkeypatch):
    """With the draws fixed, the CPU path, run in blocks, gives the output and the q, k, v gradients
    of SDPA's definition with those weights dropped and the others scaled by 1/(1-p); with nothing
    dropped it is SDPA."""
    torch.manual_seed(0)
    q, k, v = (torch.randn(3, 4, 9, 8, requires_grad=True) for _ in range(3))
    drop = torch.rand(12, 9, 9) < 0.25
    monkeypatch.setattr(attention_module, "kept", lambda shape, p: (~drop).to(torch.uint8))
    monkeypatch.setattr(attention_module, "BLOCK_BYTES", 5 * 9 * 9 * 4)  # blocks of 5, 5 and 2 slices
    mask = attention_module.causal_mask(9, 9, q.device) if causal else None
    got = attention_with_cpu_dropout(q, k, v, mask, 0.25)
    grad = torch.randn_like(got)
    got_grads = torch.autograd.grad(got, (q, k, v), grad)

    scores = q.double() @ k.double().transpose(-1, -2) / 8 ** 0.5
    if causal:
        scores = scores.masked_fill(~torch.ones(9, 9, dtype=torch.bool).tril(), float("-inf"))
    want = (scores.softmax(-1) * ~drop.view(3, 4, 9, 9) / 0.75) @ v.double()
    want_grads = torch.autograd.grad(want, (q, k, v), grad.double())
    assert torch.allclose(got, want.float(), atol=1e-5)
    for name, g, w in zip("qkv", got_grads, want_grads):
        assert torch.allclose(g, w.float(), atol=1e-5), name

    monkeypatch.setattr(attention_module, "kept", lambda shape, p: torch.ones(shape, dtype=torch.uint8))
    with torch.no_grad():
        undropped = attention_with_cpu_dropout(q, k, v, mask, 0.25)
        assert torch.allclose(undropped * 0.75, F.scaled_dot_product_attention(q, k, v, attn_mask=mask), atol=1e-5)


def test_attention_with_cpu_dropout_under_bf16_autocast_runs_in_bf16_near_fp32(monkeypatch):
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 20, 16, requires_grad=True) for _ in range(3))
    drop = torch.rand(6, 20, 20) < 0.1
    monkeypatch.setattr(attention_module, "kept", lambda shape, p: (~drop).to(torch.uint8))
    full = attention_with_cpu_dropout(q, k, v, None, 0.1)
    full_grads = torch.autograd.grad(full.square().sum(), (q, k, v))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        half = attention_with_cpu_dropout(q, k, v, None, 0.1)
    assert half.dtype == torch.bfloat16
    half_grads = torch.autograd.grad(half.float().square().sum(), (q, k, v))
    assert (half.float() - full).abs().max() < 0.05 * full.abs().max()
    for g, w in zip(half_grads, full_grads):
        assert g.dtype == torch.float32 and (g - w).abs().max() < 0.05 * w.abs().max()


def test_attention_dropout_is_unbiased_on_average():
    torch.manual_seed(0)
    attn = Attention(16, 2, dropout=0.1)
    x = torch.randn(2, 20, 16)
    with torch.no_grad():
        expected = attn.eval()(x)
        attn.train()
        mean = torch.stack([attn(x) for _ in range(400)]).mean(0)
    assert (mean - expected).abs().max() < 0.05 * expected.abs().max()
    assert not torch.allclose(attn(x), expected, atol=1e-3)  # it does drop in training


def test_kept_flags_are_the_complement_of_the_dropped_flags_of_the_same_draws():
    torch.manual_seed(3)
    drop = dropped((7, 33), 0.1)
    torch.manual_seed(3)
    keep = kept((7, 33), 0.1)
    assert keep.dtype == torch.uint8 and torch.equal(keep.bool(), ~drop)


def test_the_text_model_drops_through_melp_dropout_with_its_configured_p(tmp_path):
    from melp.models.text_encoder import build_random_text_model, load_text_model

    _, model = load_text_model(build_random_text_model(tmp_path, hidden_size=32, layers=2, heads=2), dropout=0.2)
    dropouts = [m for m in model.modules() if isinstance(m, (nn.Dropout, Dropout))]
    assert len(dropouts) == 1 + 2 * 3  # embeddings; per layer: attention weights, attention output, FFN output
    assert all(type(m) is Dropout and m.p == 0.2 for m in dropouts)
    ids = torch.randint(5, 100, (2, 9))
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
        model.train()
        assert not torch.equal(model(input_ids=ids).last_hidden_state, model(input_ids=ids).last_hidden_state)
