"""The ECG encoder (DESIGN 1.1), wav2vec 2.0 style.

(B, 12, n) -> conv feature extractor -> LayerNorm -> Linear -> dropout -> + convolutional position
embedding -> LayerNorm -> post-LN transformer layers -> (B, frames, width).
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import weight_norm

from melp.models.attention import Attention, cpu_has_amx
from melp.models.config import ECGEncoderConfig
from melp.models.dropout import Dropout


class _ScaleGrad(torch.autograd.Function):
    """Identity forward; multiplies the gradient by ``scale`` backward (wav2vec 2.0's GradMultiply)."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


class FeatureExtractor(nn.Module):
    """Strided 1-D convolutions without bias, GELU after each, GroupNorm after the first only."""

    def __init__(self, cfg: ECGEncoderConfig):
        super().__init__()
        layers, channels = [], cfg.in_channels
        for i, (k, s) in enumerate(zip(cfg.conv_kernels, cfg.conv_strides)):
            conv = nn.Conv1d(channels, cfg.conv_dim, k, stride=s, bias=False)
            nn.init.kaiming_normal_(conv.weight)  # as wav2vec 2.0 / the reference
            block = [conv]
            if i == 0:
                block.append(nn.GroupNorm(cfg.conv_dim, cfg.conv_dim))
            block.append(nn.GELU())
            layers.append(nn.Sequential(*block))
            channels = cfg.conv_dim
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        # The first block in fp32 even under bf16 autocast: its per-channel GroupNorm divides by how much
        # each channel varies, which for a quiet lead is far below bf16's rounding of the min-max input
        # (values near 0.5): in bf16 that rounding would be amplified into the features.
        with torch.autocast(x.device.type, enabled=False):
            h = self.layers[0](x.float())
        return self.layers[1:](h)


@functools.lru_cache(maxsize=8)
def dft_basis(n_fft: int, kernel: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """cos and sin of 2 pi f k / n_fft for each real-FFT bin f and kernel tap k: two (bins, kernel) fp32."""
    bins, taps = torch.arange(n_fft // 2 + 1, dtype=torch.float64), torch.arange(kernel, dtype=torch.float64)
    angle = torch.outer(bins, taps) * (2 * math.pi / n_fft)
    return angle.cos().float().to(device), angle.sin().float().to(device)


def conv_spectrum(weight: Tensor, groups: int, n_fft: int) -> tuple[Tensor, Tensor]:
    """A grouped Conv1d weight (out, in/groups, kernel) -> the real and imaginary parts of its spectrum
    for :func:`fft_grouped_conv1d`, each (groups, bins, in per group, out per group), conjugated (Conv1d
    correlates, it does not convolve). Two real matrix products with the DFT basis rather than an FFT:
    they give this layout directly, where the FFT's spectrum would need permuted copies (65 MB each at the
    paper's size), and their gradients stay real: inside the paper's CPU training step this weight's
    forward and backward took 70 ms against the FFT's 220 ms (medians; bench/pos_conv.py)."""
    out_channels, per_group, kernel = weight.shape
    cos, sin = dft_basis(n_fft, kernel, weight.device)
    taps = weight.float().view(groups, out_channels // groups, per_group, kernel).permute(0, 3, 2, 1)
    taps = taps.reshape(groups, kernel, per_group * out_channels // groups)  # (G, kernel, in * out)
    shape = (groups, cos.shape[0], per_group, out_channels // groups)
    with torch.autocast(weight.device.type, enabled=False):  # fp32 whatever the autocast, as the FFT's
        return (cos @ taps).view(shape), (sin @ taps).view(shape)


def fft_grouped_conv1d(x: Tensor, real: Tensor, imag: Tensor, bias: Tensor, padding: int, kernel: int,
                       n_fft: int) -> Tensor:
    """``F.conv1d(x, weight, bias, padding=padding, groups=groups)`` through the FFT, in fp32 whatever the
    autocast: a product per frequency bin, one small matrix per group, in real arithmetic (the real and
    imaginary parts of the signal stacked along the batch). For the positional convolution (kernel 128,
    16 groups) it is exact to fp32 rounding and several times cheaper than the direct convolution (on
    CPUs, and on GPUs where cuDNN's grouped long-kernel convolution is slow)."""
    batch, channels, length = x.shape
    if length + 2 * padding > n_fft:
        raise ValueError(f"FFT size {n_fft} is too small for {length} samples padded by {padding}")
    groups, bins = real.shape[0], real.shape[1]
    with torch.autocast(x.device.type, enabled=False):
        signal = torch.fft.rfft(F.pad(x.float(), (padding, padding)), n=n_fft)  # (B, C, bins)
        signal = signal.view(batch, groups, channels // groups, bins).permute(1, 3, 0, 2)  # (G, bins, B, C/G)
        parts = torch.cat([signal.real, signal.imag], dim=2)  # (G, bins, 2B, C/G)
        by_real, by_imag = parts @ real, parts @ imag
        product = torch.complex(by_real[:, :, :batch] - by_imag[:, :, batch:],
                                by_imag[:, :, :batch] + by_real[:, :, batch:])
        product = product.permute(2, 0, 3, 1).reshape(batch, -1, bins)
        y = torch.fft.irfft(product, n=n_fft)[..., : length + 2 * padding - kernel + 1]
        return y + bias.float()[:, None]


class PositionalConv(nn.Module):
    """Weight-normalised grouped convolution over frames (directly or through the FFT, whichever is faster
    where it runs); even kernels give one extra frame, dropped."""

    def __init__(self, width: int, kernel: int, groups: int):
        super().__init__()
        conv = nn.Conv1d(width, width, kernel, padding=kernel // 2, groups=groups)
        nn.init.normal_(conv.weight, mean=0.0, std=(4.0 / (kernel * width)) ** 0.5)  # wav2vec 2.0 init
        nn.init.zeros_(conv.bias)
        self.conv = weight_norm(conv, name="weight", dim=2)
        self.kernel, self.groups, self.trim = kernel, groups, kernel % 2 == 0
        self.register_buffer("spectrum", None)  # set by freeze()

    def freeze(self, frames: int) -> None:
        """For an inference copy (melp.models.fast_inference): fix the weight (g * v / |v|) and compute its
        spectrum for ``frames`` frames once, so every call takes the FFT path without transforming it."""
        parametrize.remove_parametrizations(self.conv, "weight")
        n_fft = frames + 2 * (self.kernel // 2)
        self.spectrum = torch.stack(conv_spectrum(self.conv.weight.detach(), self.groups, n_fft))

    @staticmethod
    def use_fft(x: Tensor) -> bool:
        """Measured (docs/speed.md): the FFT wins on GPUs (cuDNN's grouped long-kernel convolution is slow)
        and for training on CPUs: fp32, and bf16 autocast on a CPU without AMX (forward + backward 2.8x
        with AVX-512 bf16); with AMX, the bf16 convolution was 3x faster than the earlier fp32 FFT (not
        measured against the DFT transform). Without gradients the weight's transform does not pay off."""
        if x.is_cuda:
            return True
        if not torch.is_grad_enabled():
            return False
        return not (torch.is_autocast_enabled(x.device.type) and cpu_has_amx())

    def forward(self, x: Tensor) -> Tensor:  # (B, T, D)
        if self.spectrum is not None or self.use_fft(x):
            n_fft = x.shape[1] + 2 * (self.kernel // 2)
            real, imag = self.spectrum if self.spectrum is not None else conv_spectrum(self.conv.weight, self.groups, n_fft)
            y = fft_grouped_conv1d(x.transpose(1, 2), real, imag, self.conv.bias, self.kernel // 2, self.kernel, n_fft)
        else:
            y = self.conv(x.transpose(1, 2))
        if self.trim:
            y = y[..., :-1]
        return F.gelu(y).transpose(1, 2)


class EncoderLayer(nn.Module):
    """Post-LN transformer layer: x = LN(x + attn(x)); x = LN(x + FFN(x))."""

    def __init__(self, width: int, heads: int, ffn_dim: int, dropout: float, attention_dropout: float,
                 activation_dropout: float):
        super().__init__()
        # fairseq's scaled initialisation of the input projections (the reference's encoder)
        self.attn = Attention(width, heads, dropout=attention_dropout, qkv_gain=2 ** -0.5)
        self.norm1 = nn.LayerNorm(width)
        self.fc1 = nn.Linear(width, ffn_dim)
        self.act_drop = Dropout(activation_dropout)
        self.fc2 = nn.Linear(ffn_dim, width)
        self.norm2 = nn.LayerNorm(width)
        self.drop = Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        x = self.norm1(x + self.drop(self.attn(x)))
        return self.norm2(x + self.drop(self.fc2(self.act_drop(F.gelu(self.fc1(x))))))


class ECGEncoder(nn.Module):
    def __init__(self, cfg: ECGEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.features = FeatureExtractor(cfg)
        self.feature_norm = nn.LayerNorm(cfg.conv_dim)
        self.proj = nn.Linear(cfg.conv_dim, cfg.width)
        self.drop = Dropout(cfg.dropout)
        self.pos_conv = PositionalConv(cfg.width, cfg.pos_conv_kernel, cfg.pos_conv_groups)
        self.norm = nn.LayerNorm(cfg.width)
        self.layers = nn.ModuleList(
            EncoderLayer(cfg.width, cfg.heads, cfg.ffn_dim, cfg.dropout, cfg.attention_dropout,
                         cfg.activation_dropout) for _ in range(cfg.layers))

    @property
    def width(self) -> int:
        return self.cfg.width

    def n_frames(self, n_samples: int) -> int:
        for k, s in zip(self.cfg.conv_kernels, self.cfg.conv_strides):
            n_samples = (n_samples - k) // s + 1
        return n_samples

    def forward(self, x: Tensor) -> Tensor:
        """(B, 12, n) normalised ECG -> (B, frames, width) token features."""
        if x.dim() != 3 or x.shape[1] != self.cfg.in_channels:
            raise ValueError(f"ECG encoder expects (B, {self.cfg.in_channels}, n), got {tuple(x.shape)}")
        h = self.features(x)
        if self.training and self.cfg.feature_grad_scale != 1.0:
            h = _ScaleGrad.apply(h, self.cfg.feature_grad_scale)
        h = self.drop(self.proj(self.feature_norm(h.transpose(1, 2))))
        h = self.norm(h + self.pos_conv(h))
        h = self.drop(h)
        for layer in self.layers:
            h = layer(h)
        return h
