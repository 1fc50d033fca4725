"""Benches CI can check without a GPU or a trained model: the GPU training bench (CPU smoke mode), and the
measurements behind the LUDB ceiling of bench/ludb_transfer.py."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def test_gpu_step_smoke_trains_from_a_real_cache():
    proc = subprocess.run([sys.executable, str(BENCH / "gpu_step.py"), "--smoke"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "training pairs" in out and "all finite: True" in out
    before, after = map(float, re.search(r"trained on in the warm-up: ([\d.]+) before, ([\d.]+) after", out).groups())
    assert after < before  # four AdamW steps, one of them on this batch, lower its loss
    assert float(re.search(r"; ([\d.]+) ECG/s", out).group(1)) > 0


def test_ludb_ceiling_measures_the_textbook_quantities_at_the_marked_waves():
    """bench/ludb_transfer.py's criterion ceiling rests on these measurements: a drawn record with
    known waves gives back its axis, Sokolow-Lyon voltage, P duration and height, PR and RR spread."""
    import numpy as np
    import pytest

    sys.path.insert(0, str(BENCH))
    from ludb_transfer import record_measurements

    x = np.zeros((12, 5000))
    qrs = [(1000 + 500 * i, 1050 + 500 * i) for i in range(6)]  # every second, 100 ms wide
    p_waves = [(on - 100, on - 50) for on, _ in qrs]  # 100 ms long, starting 200 ms before the QRS
    for on, off in qrs:
        x[0, on + 1:off] = 1.0   # I
        x[5, on + 1:off] = 1.0   # aVF: as much as I, so the axis is +45
        x[6, on + 1:off] = -1.5  # V1: S 1.5 mV
        x[10, on + 1:off] = 2.5  # V5: R 2.5 mV
    for on, off in p_waves:
        x[1, on + 1:off] = 0.2   # II: P 0.2 mV
    m = record_measurements(x, 500, {"N": qrs, "p": p_waves})
    assert m["axis"] == pytest.approx(45.0)
    assert m["sokolow"] == pytest.approx(4.0)
    assert (m["p_duration"], m["pr"], m["rr_cv"]) == (100.0, 200.0, 0.0)
    assert m["p_height_ii"] == pytest.approx(0.2)


def test_the_benches_count_a_grouped_convolutions_backward_as_twice_its_forward():
    """torch's counter takes a grouped convolution's weight gradient for an ungrouped one (16x too many
    FLOPs for the positional convolution, which made the bf16 step's matmul-rate fraction look higher)."""
    import torch

    sys.path.insert(0, str(BENCH))
    from common import flop_counter

    for groups in (1, 16):
        conv = torch.nn.Conv1d(64, 64, 9, groups=groups)
        x = torch.randn(2, 64, 100, requires_grad=True)
        with flop_counter() as forward:
            y = conv(x)
        with flop_counter() as backward:
            y.sum().backward()
        assert forward.get_total_flops() == 2 * 2 * 64 * (64 // groups) * 9 * 92  # multiply-adds, 92 outputs
        assert backward.get_total_flops() == 2 * forward.get_total_flops()  # input and weight gradients
