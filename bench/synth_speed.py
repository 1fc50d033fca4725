"""Simulator speed: ECGs per second in memory, and seconds to write 1000 records per layout.

    python bench/synth_speed.py [--n 1000] [--repeats 3]

Figures are printed with a baseline measured in the same run, so that they can be compared across
machines: in memory, drawing the same number of float32 normal variates as the output holds
(12 x 5000 per ECG: the least any generator of that much data does); on disk, writing the same
int16 arrays with ``ndarray.tofile`` into as many files (pure I/O, no header, no simulation).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from melp.synth import export, simulate

    n = args.n
    simulate(16, 0)  # warm-up (imports, YAML table)
    rng = np.random.default_rng(0)
    t_base = best_of(args.repeats, lambda: rng.standard_normal((n, 12, 5000), dtype=np.float32))
    t_sim = best_of(args.repeats, lambda: simulate(n, 1))
    print(f"in memory: simulate({n}) {t_sim:.2f} s = {n / t_sim:,.0f} ECGs/s; "
          f"baseline (same number of normal variates) {t_base:.2f} s; ratio {t_sim / t_base:.1f}x")

    digital = np.zeros((12, 5000), dtype=np.int16)
    for fmt, files_per_ecg in (("mimic-iv-ecg", 1), ("ptbxl", 2), ("cinc", 1)):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            export(fmt, Path(tmp) / "out", n, 1)
            t_export = time.perf_counter() - start
            base_dir = Path(tmp) / "base"
            base_dir.mkdir()
            start = time.perf_counter()
            for i in range(n * files_per_ecg):
                digital.tofile(base_dir / f"{i}.dat")
            t_io = time.perf_counter() - start
        print(f"write {n} ECGs as {fmt:<12} {t_export:6.2f} s ({n / t_export:,.0f} ECGs/s); "
              f"baseline raw tofile of the same arrays {t_io:.2f} s; ratio {t_export / t_io:.1f}x")


if __name__ == "__main__":
    main()
