"""Dropout for the ECG encoder, cheaper than torch's on a CPU.

torch's CPU dropout draws one Bernoulli variable per element (``bernoulli_``), which made dropout
about 15 % of the paper model's CPU training step and 5 % of the demo's. Drawing 15-bit integers
(``random_`` on int16) and comparing them with a threshold keeps the same distribution, with p
rounded to a multiple of 2^-15 (0.1 -> 0.100006), at 1.5-2.1x the speed forward and backward
(bench/dropout.py). On a GPU torch's fused dropout is kept. The random stream differs from
torch's, so a run is reproducible for its seed but not bit-equal to one with ``nn.Dropout``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEVELS = 1 << 15  # int16 random_(0, LEVELS) draws 0 .. 2^15 - 1


class _CPUDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor, p: float) -> Tensor:
        threshold = round(p * LEVELS)
        keep = torch.empty(x.shape, dtype=torch.int16).random_(0, LEVELS) >= threshold
        # the mask carries the 1/(1-p) scale, in fp32 so that a bf16 input is scaled exactly
        mask = keep.to(torch.float32).mul_(LEVELS / (LEVELS - threshold))
        ctx.save_for_backward(mask)
        return (x * mask).to(x.dtype)

    @staticmethod
    def backward(ctx, grad: Tensor):
        (mask,) = ctx.saved_tensors
        return (grad * mask).to(grad.dtype), None


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """``F.dropout(x, p, training)``, through :class:`_CPUDropout` on a CPU."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or not 0.0 < p < 1.0 or round(p * LEVELS) == LEVELS:
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
