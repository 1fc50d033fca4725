"""A copy of the ECG side built for bf16 inference (``MELP.set_precision("bf16")``).

Matrix weights are stored in bf16 once (autocast would cast all 62 M of them again on every call:
a third of the time of one ECG), the first convolution stays fp32 (``FeatureExtractor``), and the
positional convolution runs through the FFT from a spectrum computed once (``PositionalConv.freeze``).
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from melp.models.ecg_encoder import ECGEncoder


def bf16_ecg_side(encoder: ECGEncoder, pooler: nn.Module, frames: int) -> nn.ModuleDict:
    """The copy: ``{"encoder", "pooler"}`` for inputs of ``frames`` encoder frames."""
    fast = ECGEncoder(encoder.cfg)  # built, not deep-copied: a copied weight_norm parametrization breaks
    fast.load_state_dict(encoder.state_dict())
    fast.pos_conv.freeze(frames)  # its spectrum and bias stay fp32
    side = nn.ModuleDict({"encoder": fast, "pooler": copy.deepcopy(pooler)})
    for module in side.modules():
        if isinstance(module, nn.Linear):
            module.to(torch.bfloat16)
    fast.features.layers[1:].to(torch.bfloat16)  # the first block runs in fp32 (FeatureExtractor.forward)
    return side.eval()
