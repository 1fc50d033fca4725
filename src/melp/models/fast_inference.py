"""A copy of the ECG side built for fast inference (``MELP.set_precision("bf16")`` and/or ``compile=True``).

- bf16: matrix weights are stored in bf16 once (autocast would cast all 62 M of them again on every
  call: a third of the time of one ECG); the first convolution stays fp32 (``FeatureExtractor``).
- The positional convolution runs through the FFT from a spectrum computed once (``PositionalConv.freeze``).
- compile: the copy goes through ``torch.compile`` with Inductor's ``freezing`` option (inference-only
  graph optimisations; at batch 1, 18.9 ECG/s against 16.4 compiled without it), one graph per batch
  shape. Measured in docs/speed.md.
"""
from __future__ import annotations

import copy
import os
import shutil
import warnings

import torch
from torch import Tensor, nn

from melp.models.ecg_encoder import ECGEncoder

# The FFT's complex products stay eager kernels inside the compiled graph, as intended: not worth a warning.
warnings.filterwarnings("ignore", message="Torchinductor does not support code generation for complex")


class InferenceSide(nn.Module):
    """ECG encoder then beat pooler: normalised windows (B, 12, n) -> pooled beats."""

    def __init__(self, encoder: nn.Module, pooler: nn.Module):
        super().__init__()
        self.encoder, self.pooler = encoder, pooler

    def forward(self, x: Tensor) -> Tensor:
        return self.pooler(self.encoder(x))


def require_compiler() -> None:
    """torch.compile writes C++ (CPU) or Triton (GPU) kernels and builds them with the system compiler."""
    if not any(shutil.which(c) for c in (os.environ.get("CXX", ""), "g++", "c++", "clang++") if c):
        raise RuntimeError("compile=True needs a C++ compiler (g++ or clang++) on the PATH for torch.compile's "
                           "generated kernels: install one, or leave compile off")


def inference_side(encoder: ECGEncoder, pooler: nn.Module, frames: int, bf16: bool, compile: bool) -> nn.Module:
    """The copy, for inputs of ``frames`` encoder frames."""
    fast = ECGEncoder(encoder.cfg)  # built, not deep-copied: a copied weight_norm parametrization breaks
    fast.load_state_dict(encoder.state_dict())
    fast.pos_conv.freeze(frames)  # its spectrum and bias stay fp32
    side = InferenceSide(fast, copy.deepcopy(pooler)).eval()
    if bf16:
        for module in side.modules():
            if isinstance(module, nn.Linear):
                module.to(torch.bfloat16)
        fast.features.layers[1:].to(torch.bfloat16)  # the first block runs in fp32 (FeatureExtractor.forward)
    if compile:
        side = torch.compile(side, dynamic=False, options={"freezing": True})
    return side
