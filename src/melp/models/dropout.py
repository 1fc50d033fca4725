"""Dropout for the ECG encoder, cheaper than torch's on a CPU.

torch's CPU dropout draws one Bernoulli variable per element (``bernoulli_``), which made dropout
about 15 % of the paper model's CPU training step and 5 % of the demo's. Here each element gets
16 random bits instead, four cut from every 64-bit draw of ``random_`` (its generator is serial, so
fewer draws is what counts), and is dropped when they fall below p x 2^16: the same distribution,
with p rounded to a multiple of 2^-16 (0.1 -> 0.100006), at 2.4-3.3x the speed forward and
backward (bench/dropout.py). On a GPU torch's fused dropout is kept. The random stream differs
from torch's, so a run is reproducible for its seed but not bit-equal to one with ``nn.Dropout``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 16  # an element's draw is one of 2^16 values


def _draws(shape: torch.Size) -> Tensor:
    """Uniform 16-bit integers, read four to a 64-bit draw (``random_`` over the whole int64 range)."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(1 << 63), None)
    return words.view(torch.int16)[:n].view(shape)


def _threshold(p: float) -> int:
    """A draw below this is dropped: round(p * 2^16) of the 2^16 values."""
    return round(p * LEVELS) - (1 << 15)


def dropped(shape: torch.Size, p: float) -> Tensor:
    """CPU flags, True with probability round(p * 2^16) / 2^16."""
    return _draws(shape) < _threshold(p)


def kept(shape: torch.Size, p: float) -> Tensor:
    """The complement of :func:`dropped` as uint8 0/1, a multiplier: ``x.mul_(kept)`` zeroes a float
    tensor's dropped elements 6x as fast as ``x.masked_fill_(dropped, 0)`` on a CPU."""
    return (_draws(shape) >= _threshold(p)).view(torch.uint8)


def kept_scale(p: float) -> float:
    """1 / (1 - p) for the p that :func:`dropped` draws."""
    return LEVELS / (LEVELS - round(p * LEVELS))


class _CPUDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        # the mask carries the 1/(1-p) scale, in fp32 so that a bf16 input is scaled exactly
        mask = torch.where(dropped(x.shape, p), 0.0, kept_scale(p))
        ctx.save_for_backward(mask)
        return (x * mask).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return (grad * mask).to(grad.dtype), None


def on_cpu_path(x: Tensor, p: float) -> bool:
    """Whether melp's draws serve this dropout: on a CPU, for a p that keeps some of 2^16 levels."""
    return x.device.type == "cpu" and 0.0 < p and round(p * LEVELS) < LEVELS


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)``, through :class:`_CPUDropout` on a CPU."""
    if not training or p == 0.0:
        return x
    if not on_cpu_path(x, p):
        return F.dropout(x, p, training=True)
    return _CPUDropout.apply(x, p)


class Dropout(nn.Module):
    """``nn.Dropout`` with :func:`dropout`."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        if not 0.0 <= p <= 1.0:  # also refuses NaN
            raise ValueError(f"dropout probability must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
