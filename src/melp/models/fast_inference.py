"""A copy of the ECG side built for bf16 inference (``MELP.set_precision("bf16")``).

Matrix weights are stored in bf16 once (autocast would cast all 62 M of them again on every call:
a third of the time of one ECG), the first convolution stays fp32 (``FeatureExtractor``), and the
positional convolution's weight spectrum is computed once instead of on every call.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils import parametrize

from melp.models.ecg_encoder import ECGEncoder, PositionalConv, conv_spectrum, fft_grouped_conv1d


class FixedPositionalConv(nn.Module):
    """``PositionalConv`` with its weight frozen and its spectrum precomputed for ``frames`` frames."""

    def __init__(self, pos_conv: PositionalConv, frames: int):
        super().__init__()
        conv = pos_conv.conv
        parametrize.remove_parametrizations(conv, "weight")  # leaves the weight g * v / |v|
        self.kernel, self.trim = pos_conv.kernel, pos_conv.trim
        self.n_fft = frames + 2 * (self.kernel // 2)
        self.register_buffer("spectrum", conv_spectrum(conv.weight.detach(), pos_conv.groups, self.n_fft).contiguous())
        self.register_buffer("bias", conv.bias.detach().float().clone())

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        y = fft_grouped_conv1d(x.transpose(1, 2), self.spectrum, self.bias, self.kernel // 2, self.kernel, self.n_fft)
        if self.trim:
            y = y[..., :-1]
        return torch.nn.functional.gelu(y).transpose(1, 2)


def bf16_ecg_side(encoder: ECGEncoder, pooler: nn.Module, frames: int) -> nn.ModuleDict:
    """The copy: ``{"encoder", "pooler"}`` for inputs of ``frames`` encoder frames."""
    fast = ECGEncoder(encoder.cfg)  # built, not deep-copied: a copied weight_norm parametrization breaks
    fast.load_state_dict(encoder.state_dict())
    fast.pos_conv = FixedPositionalConv(fast.pos_conv, frames)
    side = nn.ModuleDict({"encoder": fast, "pooler": copy.deepcopy(pooler)})
    first = fast.features.layers[0]  # runs in fp32 (FeatureExtractor.forward)
    for module in side.modules():
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv1d) and module not in first.modules()):
            module.to(torch.bfloat16)
    return side.eval()
