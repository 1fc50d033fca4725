"""What the side-by-side benches share; no melp import, so the authors' environment loads it too
(bench/authors_reference.py): the 8 MIMIC-IV-ECG-style reports of the training-step benches and the
in-run matmul rate, and running the authors' reference."""
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode, conv_backward_flop, sdpa_backward_flop_count, sdpa_flop_count

REPORTS = [
    "sinus rhythm. normal ecg.",
    "sinus rhythm. left axis deviation. nonspecific t wave abnormality. abnormal ecg.",
    "atrial fibrillation with rapid ventricular response. low qrs voltages in limb leads. abnormal ecg.",
    "sinus bradycardia. first degree av block. right bundle branch block. inferior infarct - age undetermined. abnormal ecg.",
    "sinus tachycardia. possible left atrial enlargement. left ventricular hypertrophy with repolarization abnormality. st depression in lateral leads. prolonged qt interval. abnormal ecg.",
    "atrial flutter with 2:1 av conduction. borderline ecg.",
    "sinus rhythm with premature ventricular complexes. poor r wave progression - probable normal variant. borderline ecg.",
    "paced rhythm. no further analysis. abnormal ecg.",
]


# The environment as the bench started, before keep_freed_host_memory() adds torch's huge-page
# variable: the authors' subprocess gets the system's settings unless asked for melp's.
SYSTEM_ENV = dict(os.environ)


def run_authors(python: str, reference: str, arguments: list[str], extra_env: dict | None = None) -> dict:
    """bench/authors_reference.py with the authors' Python: the JSON of its ``RESULT`` line; exits with
    their stderr if it fails."""
    cmd = [python, str(Path(__file__).resolve().parent / "authors_reference.py"), reference, *arguments]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          env={**SYSTEM_ENV, **(extra_env or {})})
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if proc.returncode or line is None:
        sys.exit(f"the authors' reference failed ({' '.join(cmd)}):\n{proc.stderr[-3000:]}")
    return json.loads(line[7:])


def matmul_gflops(dtype=None, n: int = 2048, repeats: int = 3) -> float:
    """This CPU's matmul rate right now (GFLOP/s) for ``dtype`` (default float32)."""
    import torch

    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def median_seconds(fn, calls: int) -> float:
    """Median wall time of ``calls`` calls of ``fn``, after one untimed warm-up call."""
    fn()
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cpu_flash(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_flop_count(query, key, value)


def _cpu_flash_backward(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return sdpa_backward_flop_count(grad_out, query, key, value)


def _grouped_conv_backward(grad_out_shape, x_shape, w_shape, *args, out_shape=None, **kwargs) -> int:
    """torch's formula with its weight-gradient term divided by the groups: torch counts that term as if
    every input channel met every output channel, 16x too much for the positional convolution."""
    bias, stride, padding, dilation, transposed, output_padding, groups, output_mask = args[:8]
    common = (grad_out_shape, x_shape, w_shape, bias, stride, padding, dilation, transposed, output_padding, groups)
    total = conv_backward_flop(*common, output_mask, out_val=out_shape)  # shapes pass through as they are
    if output_mask[1] and groups > 1:
        weight_term = conv_backward_flop(*common, [False, True, False], out_val=out_shape)
        total -= weight_term - weight_term // groups
    return total


def flop_counter() -> FlopCounterMode:
    """torch's FLOP counter, also counting the CPU flash-attention kernels (torch has formulas for the
    GPU ones only, so a CPU step's attention would count as zero FLOPs) and with grouped convolutions'
    weight gradients counted per group."""
    aten = torch.ops.aten
    return FlopCounterMode(display=False, custom_mapping={
        aten._scaled_dot_product_flash_attention_for_cpu: _cpu_flash,
        aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_flash_backward,
        aten.convolution_backward: _grouped_conv_backward})
