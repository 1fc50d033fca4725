"""The three MELP losses (DESIGN 1.5) and the distributed gather they need.

- rhythm level: :func:`global_contrastive_loss`, symmetric InfoNCE (CLIP) between the global ECG and
  report embeddings, with a learnable, clamped temperature (:class:`LogitScale`);
- token level: :func:`caption_loss`, cross-entropy of the caption decoder, padding ignored;
- beat level: :func:`local_loss`, the GLoRIA-style beat-sentence loss, batched with masks.

:class:`MultiScaleLoss` weighs them 1.0 / 2.0 / 0.2 (the paper's weights; configurable).

Logit scale convention (one form everywhere in this module): the learnable parameter is the *log*
of the scale (``log(1/0.07)`` at initialisation, as in CLIP); the loss functions take that log
parameter and apply ``exp().clamp(max=100)`` themselves (:func:`logit_scale_from_log`).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

MAX_LOGIT_SCALE = 100.0
INIT_LOGIT_SCALE = 1.0 / 0.07


# ----------------------------------------------------------------------------- distributed


def _full_precision(device: torch.device):
    """Turn autocast off: the losses' softmaxes and scaled logits are computed in float32 under bf16."""
    return torch.autocast(device_type=device.type, enabled=False)


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def gather_with_grad(x: Tensor) -> Tensor:
    """Concatenate ``x`` of every rank along dim 0 (rank order), keeping gradients.

    Identity when not running distributed. Every rank must hold the same number of rows
    (DistributedSampler guarantees it). In the backward pass each rank receives the sum, over all
    ranks, of the gradients flowing into its own rows, so that the per-rank losses together act
    like one loss on the whole global batch (see :func:`global_contrastive_loss`).
    """
    if not _distributed():
        return x
    # torch's own autograd-aware all-gather (its backward is a reduce-scatter / all-to-all sum).
    from torch.distributed.nn.functional import all_gather

    return torch.cat(all_gather(x), dim=0)


# ----------------------------------------------------------------------------- rhythm level


def logit_scale_from_log(log_logit_scale: Tensor) -> Tensor:
    """The temperature actually used: ``exp(log_logit_scale)`` clamped to at most 100."""
    return log_logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)


class LogitScale(nn.Module):
    """The learnable CLIP temperature: a log parameter initialised to ``log(1/0.07)``.

    ``module.log_scale`` is what the loss functions take; ``module()`` returns the clamped scale
    (for logging). ``clamp_()`` additionally keeps the parameter itself in range after an optimiser
    step (open_clip habit), so that weight decay or momentum cannot park it far beyond the clamp.
    """

    def __init__(self, init: float = INIT_LOGIT_SCALE):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(math.log(init), dtype=torch.float32))

    def forward(self) -> Tensor:
        return logit_scale_from_log(self.log_scale)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.log_scale.clamp_(0.0, math.log(MAX_LOGIT_SCALE))


def global_contrastive_loss(ecg_emb: Tensor, text_emb: Tensor, logit_scale: Tensor) -> Tensor:
    """Symmetric InfoNCE between L2-normalised ECG and report embeddings, both (B, D).

    ``logit_scale`` is the *log* parameter (e.g. ``LogitScale().log_scale``); the scale used is
    ``exp(logit_scale).clamp(max=100)``. Row i of ``ecg_emb`` pairs with row i of ``text_emb``.

    Distributed: each rank scores its own B rows against the gathered columns of all ranks
    (labels offset by ``rank * B``) in both directions and returns the mean over its own rows, i.e.
    ``0.5 * (CE(ecg->text) + CE(text->ecg))``. With gradients flowing through the gather, the sum of
    the W per-rank losses is W times the single-process loss on the concatenated batch; DDP averages
    parameter gradients over ranks, which divides by W again, so parameter updates equal those of one
    process on the whole batch (tested in tests/test_losses_distributed.py).
    """
    if ecg_emb.shape != text_emb.shape or ecg_emb.dim() != 2:
        raise ValueError(f"ecg_emb and text_emb must both be (B, D); got {tuple(ecg_emb.shape)} "
                         f"and {tuple(text_emb.shape)}")
    with _full_precision(ecg_emb.device):
        scale = logit_scale_from_log(logit_scale.float())
        ecg_emb, text_emb = ecg_emb.float(), text_emb.float()
        all_ecg, all_text = gather_with_grad(ecg_emb), gather_with_grad(text_emb)
        rank = dist.get_rank() if _distributed() else 0
        labels = torch.arange(ecg_emb.shape[0], device=ecg_emb.device) + rank * ecg_emb.shape[0]
        logits_ecg = scale * ecg_emb @ all_text.T  # (B, W*B): own ECGs vs every report
        logits_text = scale * text_emb @ all_ecg.T  # (B, W*B): own reports vs every ECG
        return 0.5 * (F.cross_entropy(logits_ecg, labels) + F.cross_entropy(logits_text, labels))


# ----------------------------------------------------------------------------- token level


class _SummedCrossEntropy(torch.autograd.Function):
    """Summed cross-entropy of (N, V) logits over the rows where ``valid``, computed in fp32
    whatever the logits' dtype.

    The same value and gradient as ``F.cross_entropy(logits.float(), targets, ignore_index=...,
    reduction="sum")`` at about half its cost on a CPU (bench/caption_loss.py): one fp32 buffer
    holds the softmax from the forward and becomes the gradient in place, instead of a log-softmax
    output, a zero-filled one-hot gradient and a log-softmax backward, each the size of the caption
    decoder's vocabulary logits (a quarter of the demo's training step)."""

    @staticmethod
    def forward(ctx, logits: Tensor, targets: Tensor, valid: Tensor) -> Tensor:
        probs = logits.to(torch.float32, copy=True)
        peak = probs.amax(dim=1, keepdim=True)
        probs.sub_(peak).exp_()
        total = probs.sum(dim=1, keepdim=True)
        probs.div_(total)
        # log-sum-exp minus the target logit (never the log of an underflowed probability)
        target_logits = logits.gather(1, targets[:, None]).float()
        weight = valid.to(torch.float32)[:, None]
        loss = ((peak + total.log() - target_logits) * weight).sum()
        ctx.save_for_backward(probs, targets, weight)
        ctx.logits_dtype, ctx.used = logits.dtype, False
        return loss

    @staticmethod
    def backward(ctx, grad_loss: Tensor):
        if ctx.used:
            raise RuntimeError("caption_loss: backward through the same graph twice is not supported")
        ctx.used = True
        probs, targets, weight = ctx.saved_tensors
        rows = torch.arange(len(targets), device=targets.device)
        probs[rows, targets] -= 1.0  # softmax - one-hot
        return probs.mul_(weight * grad_loss).to(ctx.logits_dtype), None, None


def caption_loss(logits: Tensor, targets: Tensor, ignore_index: int = -100) -> Tensor:
    """Mean cross-entropy over the target tokens that are not ``ignore_index``.

    ``logits`` is (..., V) and ``targets`` the matching (...) ids, e.g. (B, L, V) / (B, L), or only
    the rows that have a target, (N, V) / (N,). A batch without any target token gives 0 (with a
    graph), not NaN.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"caption logits {tuple(logits.shape)} do not match targets {tuple(targets.shape)}")
    flat_targets = targets.reshape(-1)
    valid = flat_targets != ignore_index
    safe_targets = torch.where(valid, flat_targets, torch.zeros_like(flat_targets))
    total = _SummedCrossEntropy.apply(logits.reshape(-1, logits.shape[-1]), safe_targets, valid)
    return total / valid.sum().clamp(min=1)


# ----------------------------------------------------------------------------- beat level


def local_similarity(beats: Tensor, sentences: Tensor, sentence_mask: Tensor,
                     t1: float = 4.0, t2: float = 5.0) -> Tensor:
    """Beat-sentence matching score of every (report i, ECG j) pair: (B_text, B_ecg).

    beats (B_ecg, n, D), sentences (B_text, S, D), sentence_mask (B_text, S) bool (True = a real
    sentence; every report needs at least one). Steps, per pair (DESIGN 1.5, GLoRIA order):
    a = beat . sentence (n x s); softmax over sentences; times t1; softmax over beats;
    context_k = attention-weighted sum of beats; c_k = cos(sentence_k, context_k);
    score = log sum_k exp(t2 c_k) over real sentences.

    The contexts, one D-vector per (report, ECG, sentence), are never formed: sentence . context is
    the attention-weighted sum of the beat . sentence products already at hand, and |context|^2
    the attention weights' quadratic form in each ECG's beat Gram matrix. Equal to fp32 rounding;
    forward and backward 1.7-2x faster at the demo's sizes and 23x at the paper's batch of 64 on a
    CPU (bench/dropout.py).
    """
    if beats.dim() != 3 or sentences.dim() != 3 or beats.shape[-1] != sentences.shape[-1]:
        raise ValueError(f"beats must be (B, n, D) and sentences (B, S, D); got {tuple(beats.shape)} "
                         f"and {tuple(sentences.shape)}")
    if sentence_mask.shape != sentences.shape[:2]:
        raise ValueError(f"sentence_mask {tuple(sentence_mask.shape)} does not match sentences "
                         f"{tuple(sentences.shape[:2])}")
    mask = sentence_mask.bool()
    if not bool(mask.any(dim=1).all()):
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        raise ValueError(f"reports at batch positions {empty} have no sentence; the local loss needs "
                         "at least one sentence per report")
    with _full_precision(beats.device):
        beats, sentences = beats.float(), sentences.float()
        # products[i, j, b, k]: beat b of ECG j . sentence k of report i
        products = torch.einsum("jbd,ikd->ijbk", beats, sentences)
        pad = ~mask[:, None, None, :]  # (B_text, 1, 1, S)
        a = products.masked_fill(pad, float("-inf")).softmax(dim=-1)  # over sentences (real ones only)
        attn = (a * t1).softmax(dim=2)  # over beats
        # context[i, j, k] = sum_b attn[i, j, b, k] beats[j, b], taken apart as the docstring says
        sentence_dot_context = (attn * products).sum(dim=2)  # (B_text, B_ecg, S)
        gram = beats @ beats.transpose(1, 2)  # (B_ecg, n, n)
        context_sq = torch.einsum("ijbk,jbc,ijck->ijk", attn, gram, attn)
        # F.cosine_similarity's clamping of each norm at eps (the context's before the square root,
        # which keeps its gradient finite)
        eps = 1e-8
        norms = sentences.norm(dim=-1).clamp(min=eps)[:, None, :] * context_sq.clamp(min=eps * eps).sqrt()
        cos = (t2 * sentence_dot_context / norms).masked_fill(~mask[:, None, :], float("-inf"))
        return cos.logsumexp(dim=-1)


def local_loss(beats: Tensor, sentences: Tensor, sentence_mask: Tensor,
               t1: float = 4.0, t2: float = 5.0, t3: float = 10.0) -> Tensor:
    """Beat-level loss: symmetric cross-entropy on ``t3 * local_similarity`` over the batch.

    Pair i (report i, ECG i) is the positive; the result is the mean of the report->ECG and the
    ECG->report cross-entropies. Computed per rank (no gather), as in the reference.
    """
    if beats.shape[0] != sentences.shape[0]:
        raise ValueError(f"local loss needs as many ECGs as reports; got {beats.shape[0]} and {sentences.shape[0]}")
    logits = t3 * local_similarity(beats, sentences, sentence_mask, t1, t2)  # (report, ECG), float32
    labels = torch.arange(logits.shape[0], device=logits.device)
    with _full_precision(logits.device):
        return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


# ----------------------------------------------------------------------------- total


@dataclass
class LossWeights:
    """Weights of the three terms (the paper's: 1.0 global, 2.0 caption, 0.2 local)."""

    global_: float = 1.0
    caption: float = 2.0
    local: float = 0.2

    @classmethod
    def from_dict(cls, d: dict) -> "LossWeights":
        """Accepts keys ``global`` (or ``global_``), ``caption``, ``local``."""
        d = dict(d)
        if "global" in d:
            d["global_"] = d.pop("global")
        unknown = set(d) - {"global_", "caption", "local"}
        if unknown:
            raise ValueError(f"unknown loss weight(s) {sorted(unknown)}; expected global, caption, local")
        return cls(**{k: float(v) for k, v in d.items()})

    def to_dict(self) -> dict:
        d = asdict(self)
        d["global"] = d.pop("global_")
        return d


class MultiScaleLoss(nn.Module):
    """The weighted sum of the three MELP losses, plus the learnable logit scale it owns.

    ``forward`` returns a dict with ``loss``, ``loss_global``, ``loss_caption``, ``loss_local`` and
    ``logit_scale`` (the clamped scale in use, detached, for logging).
    """

    def __init__(self, weights: LossWeights | dict | None = None,
                 t1: float = 4.0, t2: float = 5.0, t3: float = 10.0, ignore_index: int = -100):
        super().__init__()
        if isinstance(weights, dict):
            weights = LossWeights.from_dict(weights)
        self.weights = weights or LossWeights()
        self.t1, self.t2, self.t3 = t1, t2, t3
        self.ignore_index = ignore_index
        self.logit_scale = LogitScale()

    def forward(self, ecg_emb: Tensor, text_emb: Tensor, caption_logits: Tensor, caption_targets: Tensor,
                beats: Tensor, sentences: Tensor, sentence_mask: Tensor) -> dict[str, Tensor]:
        g = global_contrastive_loss(ecg_emb, text_emb, self.logit_scale.log_scale)
        c = caption_loss(caption_logits, caption_targets, self.ignore_index)
        loc = local_loss(beats, sentences, sentence_mask, self.t1, self.t2, self.t3)
        w = self.weights
        total = w.global_ * g + w.caption * c + w.local * loc
        return {"loss": total, "loss_global": g, "loss_caption": c, "loss_local": loc,
                "logit_scale": self.logit_scale().detach()}
