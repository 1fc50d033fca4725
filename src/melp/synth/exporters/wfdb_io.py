"""Minimal WFDB writers (format 16 .dat, and the MATLAB v4 .mat of the PhysioNet/CinC challenges).

``wfdb.wrsamp`` would do the .dat case but costs ~25 ms a record; a 12 x 5000 record is one
header of a dozen lines and one int16 array, written here in well under a millisecond. Every
file is read back by ``wfdb`` itself in the tests.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

INT16_MAX = 32767  # -32768 is WFDB's "no sample" value in format 16


def to_digital(signal_mv: np.ndarray, gain: float) -> np.ndarray:
    """(leads, T) mV -> int16 ADC units at gain units/mV (clipped to the representable range)."""
    return np.clip(np.rint(signal_mv * gain), -INT16_MAX, INT16_MAX).astype(np.int16)


def _checksums(digital: np.ndarray) -> np.ndarray:
    total = digital.astype(np.int64).sum(axis=1)
    return (total + 32768) % 65536 - 32768


def _signal_lines(file_name: str, fmt: str, gain_text: str, digital: np.ndarray, names) -> list[str]:
    return [
        f"{file_name} {fmt} {gain_text} 16 0 {int(first)} {int(check)} 0 {name}"
        for first, check, name in zip(digital[:, 0], _checksums(digital), names)
    ]


def write_dat(directory: Path, record: str, digital: np.ndarray, fs: int, gain_text: str, names,
              time_date: str = "", comments=()) -> None:
    """record.hea + record.dat (format 16, samples interleaved) for digital (leads, T) int16."""
    directory.mkdir(parents=True, exist_ok=True)
    first = f"{record} {len(digital)} {fs} {digital.shape[1]}" + (f" {time_date}" if time_date else "")
    lines = [first, *_signal_lines(f"{record}.dat", "16", gain_text, digital, names)]
    lines += [f"#{c}" for c in comments]
    (directory / f"{record}.hea").write_text("\n".join(lines) + "\n")
    np.ascontiguousarray(digital.T).astype("<i2").tofile(directory / f"{record}.dat")


def write_mat(directory: Path, record: str, digital: np.ndarray, fs: int, gain_text: str, names,
              time_date: str = "", comments=()) -> None:
    """record.hea + record.mat as in the CinC challenges: MATLAB v4 matrix 'val' (leads, T) int16.

    A v4 file has a 20-byte header and the name 'val\\0' before the column-major data, hence the
    '16+24' format (int16, byte offset 24) in the header.
    """
    directory.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(directory / f"{record}.mat", {"val": digital}, format="4")
    first = f"{record} {len(digital)} {fs} {digital.shape[1]}" + (f" {time_date}" if time_date else "")
    lines = [first, *_signal_lines(f"{record}.mat", "16+24", gain_text, digital, names)]
    lines += [f"#{c}" for c in comments]
    (directory / f"{record}.hea").write_text("\n".join(lines) + "\n")
