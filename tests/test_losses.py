"""The MELP losses against plain reference implementations written here."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from melp.losses import (
    LogitScale,
    LossWeights,
    MultiScaleLoss,
    caption_loss,
    global_contrastive_loss,
    local_loss,
    logit_scale_from_log,
)


def _loop_local_loss(beats, sentences, counts, t1=4.0, t2=5.0, t3=10.0):
    """DESIGN 1.5 written as plainly as possible: one (report i, ECG j) pair at a time."""
    batch = beats.shape[0]
    scores = torch.zeros(batch, batch, dtype=torch.float64)
    for i in range(batch):
        sent = sentences[i, : counts[i]].double()  # (s, D) real sentences of report i
        for j in range(batch):
            beat = beats[j].double()  # (n, D)
            a = beat @ sent.T  # (n, s)
            a = torch.softmax(a, dim=1)  # over sentences
            a = a * t1
            a = torch.softmax(a, dim=0)  # over beats
            total = 0.0
            for k in range(sent.shape[0]):
                context = (a[:, k : k + 1] * beat).sum(dim=0)
                c = torch.dot(sent[k], context) / (sent[k].norm() * context.norm())
                total = total + torch.exp(t2 * c)
            scores[i, j] = torch.log(total)
    logits = t3 * scores
    labels = torch.arange(batch)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def _padded_sentences(counts, dim, generator):
    sentences = torch.randn(len(counts), max(counts), dim, generator=generator)
    mask = torch.zeros(len(counts), max(counts), dtype=torch.bool)
    for i, c in enumerate(counts):
        mask[i, :c] = True
        sentences[i, c:] = 1e3 * torch.randn(max(counts) - c, dim, generator=generator)  # must not matter
    return sentences, mask


@pytest.mark.parametrize("counts", [[1, 7, 3, 1, 5], [2, 2, 2], [1]])
def test_local_loss_and_its_gradients_match_per_pair_loop(counts):
    g = torch.Generator().manual_seed(0)
    beats = torch.randn(len(counts), 13, 16, generator=g, requires_grad=True)
    sentences, mask = _padded_sentences(counts, 16, g)
    sentences.requires_grad_(True)
    batched = local_loss(beats, sentences, mask)
    reference = _loop_local_loss(beats, sentences, counts)
    assert torch.allclose(batched.double(), reference, atol=1e-5), (batched.item(), reference.item())
    grads = torch.autograd.grad(batched, [beats, sentences])
    expected = torch.autograd.grad(reference, [beats, sentences])
    for got, want in zip(grads, expected):
        assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not grads[1][~mask].any()  # padding sentences get no gradient


def test_local_loss_ignores_padding_sentences_and_has_gradients():
    g = torch.Generator().manual_seed(1)
    beats = torch.randn(3, 5, 8, generator=g, requires_grad=True)
    sentences, mask = _padded_sentences([1, 4, 2], 8, g)
    sentences.requires_grad_(True)
    loss = local_loss(beats, sentences, mask)
    loss.backward()
    assert torch.isfinite(loss)
    assert beats.grad.abs().sum() > 0
    # padding sentences receive no gradient; real ones do
    assert torch.all(sentences.grad[~mask] == 0)
    assert torch.all(sentences.grad[mask].abs().sum(-1) > 0)


def test_local_loss_prefers_matching_pairs():
    # ECG j's beats are exactly report j's sentences: the aligned batch must score lower than a shuffled one.
    g = torch.Generator().manual_seed(2)
    sentences, mask = _padded_sentences([3, 3, 3, 3], 32, g)
    beats = sentences.clone()
    aligned = local_loss(beats, sentences, mask)
    shuffled = local_loss(beats[[1, 2, 3, 0]], sentences, mask)
    assert aligned < shuffled


def test_local_loss_rejects_report_without_sentences():
    beats = torch.randn(2, 4, 8)
    sentences = torch.randn(2, 3, 8)
    mask = torch.tensor([[True, False, False], [False, False, False]])
    with pytest.raises(ValueError, match=r"\[1\]"):
        local_loss(beats, sentences, mask)


def test_global_loss_known_value_and_symmetry():
    # Two orthogonal pairs: logits = s*I, so each CE = log(1 + e^{-s}) exactly.
    ecg = torch.eye(2)
    text = torch.eye(2)
    log_scale = torch.tensor(math.log(3.0))
    expected = math.log(1 + math.exp(-3.0))
    assert global_contrastive_loss(ecg, text, log_scale).item() == pytest.approx(expected, rel=1e-6)

    g = torch.Generator().manual_seed(3)
    a = F.normalize(torch.randn(6, 4, generator=g), dim=-1)
    b = F.normalize(torch.randn(6, 4, generator=g), dim=-1)
    s = torch.tensor(math.log(10.0))
    # symmetric in its two towers, and equal to the textbook CLIP formula
    assert torch.allclose(global_contrastive_loss(a, b, s), global_contrastive_loss(b, a, s))
    logits = 10.0 * a @ b.T
    labels = torch.arange(6)
    clip = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    assert torch.allclose(global_contrastive_loss(a, b, s), clip, atol=1e-6)


def test_logit_scale_clamp():
    scale = LogitScale()
    assert scale().item() == pytest.approx(1 / 0.07, rel=1e-5)
    assert scale.log_scale.item() == pytest.approx(math.log(1 / 0.07), rel=1e-6)
    big = torch.tensor(math.log(1000.0), requires_grad=True)
    assert logit_scale_from_log(big).item() == pytest.approx(100.0)
    # the clamped scale is what the loss uses: a scale of 1000 scores exactly like 100
    ecg = F.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(4)), dim=-1)
    loss_big = global_contrastive_loss(ecg, ecg.flip(0), big)
    loss_100 = global_contrastive_loss(ecg, ecg.flip(0), torch.tensor(math.log(100.0)))
    assert torch.allclose(loss_big, loss_100)
    loss_big.backward()
    assert big.grad.item() == 0.0  # beyond the clamp the scale stops learning
    with torch.no_grad():
        scale.log_scale.fill_(9.0)
    scale.clamp_()
    assert scale.log_scale.item() == pytest.approx(math.log(100.0))


def test_caption_loss_ignores_padding():
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 4, 11, generator=g)
    targets = torch.tensor([[3, 5, -100, -100], [1, 2, 9, -100]])
    keep = targets != -100
    expected = F.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(caption_loss(logits, targets), expected)
    # changing logits at padded positions changes nothing
    logits2 = logits.clone()
    logits2[~keep] = 1e4
    assert torch.allclose(caption_loss(logits2, targets), expected)
    # rows-only form, custom ignore index, and an all-padding batch
    assert torch.allclose(caption_loss(logits[keep], targets[keep]), expected)
    assert torch.allclose(caption_loss(logits, targets.masked_fill(~keep, 0), ignore_index=0),
                          F.cross_entropy(logits[keep & (targets != 0)], targets[keep & (targets != 0)]))
    assert caption_loss(logits, torch.full_like(targets, -100)).item() == 0.0


def test_multiscale_loss_weights():
    g = torch.Generator().manual_seed(6)
    e = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    t = F.normalize(torch.randn(3, 8, generator=g), dim=-1)
    logits, targets = torch.randn(3, 5, 20, generator=g), torch.randint(0, 20, (3, 5), generator=g)
    beats, (sent, mask) = torch.randn(3, 4, 8, generator=g), _padded_sentences([1, 2, 3], 8, g)
    out = MultiScaleLoss()(e, t, logits, targets, beats, sent, mask)
    assert torch.allclose(out["loss"], out["loss_global"] + 2.0 * out["loss_caption"] + 0.2 * out["loss_local"])
    custom = MultiScaleLoss({"global": 0.5, "caption": 0.0, "local": 1.0})(e, t, logits, targets, beats, sent, mask)
    assert torch.allclose(custom["loss"], 0.5 * out["loss_global"] + out["loss_local"])
    assert LossWeights.from_dict(LossWeights(1, 2, 3).to_dict()) == LossWeights(1, 2, 3)
    with pytest.raises(ValueError, match="rhythm"):
        LossWeights.from_dict({"rhythm": 1.0})


def test_losses_stay_float32_under_bf16_autocast():
    g = torch.Generator().manual_seed(7)
    beats = torch.randn(4, 5, 8, generator=g)
    sentences, mask = _padded_sentences([1, 2, 3, 4], 8, g)
    e = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    t = F.normalize(torch.randn(4, 8, generator=g), dim=-1)
    s = torch.tensor(math.log(100.0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        local_amp = local_loss(beats, sentences, mask)
        global_amp = global_contrastive_loss(e, t, s)
    assert local_amp.dtype == global_amp.dtype == torch.float32
    assert torch.allclose(local_amp, local_loss(beats, sentences, mask), atol=1e-6)
    assert torch.allclose(global_amp, global_contrastive_loss(e, t, s), atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_caption_loss_gradient_matches_cross_entropy(dtype):
    g = torch.Generator().manual_seed(6)
    base = torch.randn(3, 5, 40, generator=g) * 4
    base[0, 0, 7] = 300.0  # one near-certain token: its neighbours' probabilities underflow in fp32
    targets = torch.tensor([[7, 1, 2, -100, -100], [4, 39, 0, 12, -100], [-100, 3, 3, 3, 8]])
    targets[0, 1] = 8  # a target whose probability underflows: the loss stays finite
    ours_in = base.to(dtype).requires_grad_()
    ref_in = base.to(dtype).requires_grad_()
    before = ours_in.detach().clone()
    ours = caption_loss(ours_in, targets)
    ref = F.cross_entropy(ref_in.float().reshape(-1, 40), targets.reshape(-1))
    assert torch.equal(ours_in.detach(), before)  # the logits are not changed in place
    assert torch.isfinite(ours) and torch.allclose(ours, ref, rtol=1e-5)
    (ours * 3).backward()
    (ref * 3).backward()
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    assert ours_in.grad.dtype == dtype
    assert torch.allclose(ours_in.grad.float(), ref_in.grad.float(), atol=tol)
    assert not ours_in.grad[targets == -100].any()  # padded positions get no gradient


def test_caption_loss_refuses_a_second_backward():
    logits = torch.randn(4, 9, requires_grad=True)
    loss = caption_loss(logits, torch.tensor([1, 2, 3, 4]))
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="twice"):
        loss.backward()
