"""The positional convolution's weight transform inside the paper model's CPU training step: melp's
(real products with the DFT basis, src/melp/models/ecg_encoder.py) against the FFT formula it replaced.

Both run in one process on one paper model (fp32, batch 8, freed memory kept as ``melp pretrain``
keeps it), alternating step by step. Hooks time, within each real step, the weight's forward
(weight -> spectrum) and its backward (the spectrum's gradient arriving -> the weight's gradient
done); the whole step is timed too. The FFT formula: ``rfft(weight).conj()`` permuted to (groups, bins,
in, out) and one complex matrix product per bin, as melp computed it before. The first round is a
warm-up and is not counted.

    python bench/pos_conv.py [--rounds 8]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

from melp.train.host_memory import keep_freed_host_memory

keep_freed_host_memory()  # before the first tensor, as pretrain does

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from melp.models import ecg_encoder  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_step import OurStep  # noqa: E402


def fft_spectrum(weight, groups: int, n_fft: int):
    out_channels, per_group, _ = weight.shape
    spectrum = torch.fft.rfft(weight.float(), n=n_fft).conj()
    return spectrum.view(groups, out_channels // groups, per_group, -1).permute(0, 3, 2, 1)


def fft_product_conv1d(x, spectrum, bias, padding: int, kernel: int, n_fft: int):
    batch, channels, length = x.shape
    groups, bins = spectrum.shape[0], spectrum.shape[1]
    signal = torch.fft.rfft(F.pad(x.float(), (padding, padding)), n=n_fft)
    signal = signal.view(batch, groups, channels // groups, bins).permute(1, 3, 0, 2)
    product = (signal @ spectrum).permute(2, 0, 3, 1).reshape(batch, -1, bins)
    return torch.fft.irfft(product, n=n_fft)[..., : length + 2 * padding - kernel + 1] + bias.float()[:, None]


class Timed:
    """PositionalConv.forward (the paper's fp32 training path) with the weight transform timed."""

    def __init__(self, method: str):
        self.method, self.forward_s, self.marks = method, 0.0, {}

    def mark(self, key: str):
        def hook(grad):
            self.marks.setdefault(key, time.perf_counter())
            return grad
        return hook

    def __call__(self, conv, x):
        n_fft = x.shape[1] + 2 * (conv.kernel // 2)
        weight = conv.conv.weight
        weight.register_hook(self.mark("weight"))
        start = time.perf_counter()
        if self.method == "fft":
            spectrum = fft_spectrum(weight, conv.groups, n_fft)
            parts = (spectrum,)
        else:
            parts = ecg_encoder.conv_spectrum(weight, conv.groups, n_fft)
        self.forward_s = time.perf_counter() - start
        for part in parts:
            part.register_hook(self.mark("spectrum"))
        args = (x.transpose(1, 2), *parts, conv.conv.bias, conv.kernel // 2, conv.kernel, n_fft)
        y = fft_product_conv1d(*args) if self.method == "fft" else ecg_encoder.fft_grouped_conv1d(*args)
        return F.gelu(y[..., :-1] if conv.trim else y).transpose(1, 2)

    def backward_s(self) -> float:
        return self.marks["weight"] - self.marks["spectrum"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    step = OurStep(8)
    rows: dict[str, list[tuple[float, float, float]]] = {"fft": [], "dft": []}
    original = ecg_encoder.PositionalConv.forward
    try:
        for round_ in range(args.rounds + 1):
            for method in rows:
                timed = Timed(method)
                ecg_encoder.PositionalConv.forward = lambda conv, x, timed=timed: timed(conv, x)
                start = time.perf_counter()
                step.step("fp32")
                seconds = time.perf_counter() - start
                print(f"round {round_}{' (warm-up)' if not round_ else ''} {method}: step {seconds:.2f} s, "
                      f"weight transform forward {timed.forward_s * 1e3:.0f} ms, backward "
                      f"{timed.backward_s() * 1e3:.0f} ms", flush=True)
                if round_:
                    rows[method].append((timed.forward_s, timed.backward_s(), seconds))
    finally:
        ecg_encoder.PositionalConv.forward = original
    print(f"\nmedians over {args.rounds} rounds:")
    for method, label in (("fft", "FFT formula (before)"), ("dft", "DFT-basis products (melp)")):
        fwd, bwd, seconds = (statistics.median(column) for column in zip(*rows[method]))
        print(f"  {label:28s} forward {fwd * 1e3:6.1f} ms, backward {bwd * 1e3:6.1f} ms, step {seconds:.2f} s")


if __name__ == "__main__":
    main()
