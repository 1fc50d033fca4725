"""The GPU training bench runs (CPU smoke mode): the script CI can check without a GPU."""
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
