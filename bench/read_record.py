"""Per-record reading speed: melp.read_record against wfdb.rdsamp on the same files, same run.

    python bench/read_record.py                     # 200 synthetic 12 x 5000 WFDB records (.dat)
    MELP_REAL_DATA=../shared/data python bench/read_record.py   # also LUDB (.dat) and cinc-smoke (.mat)

Prints milliseconds per record for both readers and the speed-up ratio (wfdb time / melp time).
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import numpy as np
import wfdb

from melp.data.readers import read_record

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_synthetic(folder: Path, n: int = 200) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        d = rng.integers(-2000, 2000, size=(5000, 12)).astype(np.int16)
        name = f"{40000000 + i}"
        wfdb.wrsamp(name, fs=500, units=["mV"] * 12, sig_name=MIMIC_ORDER, d_signal=d, fmt=["16"] * 12,
                    adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(folder))
        paths.append(folder / name)
    return paths


def per_record_ms(read, records: list[Path], repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):  # best of a few passes: the OS file cache is warm after the first
        start = time.perf_counter()
        for record in records:
            read(record)
        best = min(best, time.perf_counter() - start)
    return 1e3 * best / len(records)


def compare(label: str, records: list[Path]) -> None:
    ours = per_record_ms(lambda p: read_record(p), records)
    theirs = per_record_ms(lambda p: wfdb.rdsamp(str(p)), records)
    print(f"{label:<28} {len(records):>5} records   melp {ours:6.3f} ms   wfdb.rdsamp {theirs:6.3f} ms   "
          f"ratio {theirs / ours:5.1f}x")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        compare("synthetic 12x5000 .dat", write_synthetic(Path(tmp)))
    root = os.environ.get("MELP_REAL_DATA")
    if root:
        root = Path(root)
        compare("LUDB .dat", [p.with_suffix("") for p in sorted((root / "ludb" / "data").glob("*.hea"))])
        compare("cinc-smoke .mat", [p.with_suffix("") for p in sorted((root / "cinc-smoke").glob("*/*.hea"))])


if __name__ == "__main__":
    main()
