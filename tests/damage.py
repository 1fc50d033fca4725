"""Damaged copies of a real WFDB record (format 16), as a hostile but realistic user makes them."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def _random(raw):
    return np.random.default_rng(0).integers(-32768, 32767, raw.size).astype("<i2")


def _saturate(raw):
    return np.clip(raw, -100, 100).astype("<i2")  # +-0.1 mV at LUDB's gains: every beat clipped


def _amplify(raw):
    return np.clip(raw.astype(np.int64) * 40, -32767, 32767).astype("<i2")


DAMAGE = {"random": _random, "zeros": np.zeros_like, "saturated": _saturate, "huge": _amplify}


def damaged_copy(hea: Path, out_dir: Path, kind: str) -> Path:
    """``out_dir/KIND.hea`` + ``.dat``: the record's header (checksums kept) over damaged samples."""
    hea = Path(hea)
    out_dir.mkdir(parents=True, exist_ok=True)
    header = hea.read_text().replace(f"{hea.stem}.dat", f"{kind}.dat").split("\n", 1)
    (out_dir / f"{kind}.hea").write_text(f"{kind} {header[0].split(' ', 1)[1]}\n{header[1]}")
    raw = np.fromfile(hea.with_suffix(".dat"), dtype="<i2")
    DAMAGE[kind](raw).astype("<i2").tofile(out_dir / f"{kind}.dat")
    return out_dir / f"{kind}.hea"


def intact_copy(hea: Path, out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    for f in (hea, hea.with_suffix(".dat")):
        shutil.copy(f, out_dir / f.name)
    return out_dir / hea.name
