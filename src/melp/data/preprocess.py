"""One preprocessing path for training and inference alike.

``prepare_signal`` turns a record's signal (leads x samples, mV, any rate and length) into
fixed-length windows at the target rate (still in mV: this is what the cache stores), and
``normalize`` applies the model's input normalisation. ``preprocess`` is both in a row.
The settings travel as a small JSON-able config saved with every cache and every model.
"""
from __future__ import annotations

import dataclasses
import json
from fractions import Fraction
from pathlib import Path

import numpy as np

NORMALIZE_MODES = ("minmax", "zscore", "none")
WINDOW_MODES = ("first", "all")


@dataclasses.dataclass(frozen=True)
class PreprocessConfig:
    fs: int = 500  # target sampling rate (Hz)
    seconds: float = 10.0  # window length
    windows: str = "first"  # "first": one window per record; "all": consecutive windows
    bandpass: tuple[float, float] | None = None  # e.g. (0.5, 100.0) Hz; None keeps the raw band
    normalize: str = "minmax"  # reference: min-max of the whole 12 x n window to [0, 1]

    def __post_init__(self):
        if self.normalize not in NORMALIZE_MODES:
            raise ValueError(f"normalize must be one of {NORMALIZE_MODES}, got {self.normalize!r}")
        if self.windows not in WINDOW_MODES:
            raise ValueError(f"windows must be one of {WINDOW_MODES}, got {self.windows!r}")
        if self.fs <= 0 or self.seconds <= 0:
            raise ValueError("fs and seconds must be positive")
        if self.bandpass is not None:
            lo, hi = self.bandpass
            object.__setattr__(self, "bandpass", (float(lo), float(hi)))
            if not 0 <= lo < hi:
                raise ValueError(f"bandpass must be (low, high) with 0 <= low < high, got {self.bandpass}")
            if lo >= 0.45 * self.fs:  # the high edge is capped just below Nyquist, the low one cannot be
                raise ValueError(f"bandpass low edge {lo} Hz is too close to Nyquist for fs={self.fs} Hz")

    @property
    def n_samples(self) -> int:
        return int(round(self.fs * self.seconds))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PreprocessConfig":
        d = dict(d)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown preprocessing settings {sorted(unknown)}")
        if d.get("bandpass") is not None:
            d["bandpass"] = tuple(d["bandpass"])
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "PreprocessConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))


def resample(x: np.ndarray, fs_in: float, fs_out: float) -> np.ndarray:
    """Polyphase resampling along the last axis (anti-aliased)."""
    if abs(fs_in - fs_out) < 1e-9:
        return x
    from scipy import signal as sps  # here, not at the top: the CLI's --help must not pay for scipy

    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    return sps.resample_poly(x, ratio.numerator, ratio.denominator, axis=-1)


def bandpass(x: np.ndarray, fs: float, low: float, high: float, order: int = 3) -> np.ndarray:
    """Zero-phase Butterworth band-pass (low == 0 gives a low-pass)."""
    from scipy import signal as sps

    high = min(high, 0.45 * fs)
    if low > 0:
        sos = sps.butter(order, [low, high], btype="bandpass", fs=fs, output="sos")
    else:
        sos = sps.butter(order, high, btype="lowpass", fs=fs, output="sos")
    padlen = min(x.shape[-1] - 1, 3 * (2 * len(sos) + 1))
    return sps.sosfiltfilt(sos, x, axis=-1, padlen=padlen)


def prepare_signal(signal: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """(leads, T) mV at ``fs`` -> (W, leads, n) float32 mV at ``cfg.fs``.

    Short records are zero-padded at the end; longer ones give their first window, or with
    ``windows="all"`` every complete consecutive window (at least one).
    """
    x = np.asarray(signal)
    if x.ndim != 2:
        raise ValueError(f"expected a (leads, samples) signal, got shape {x.shape}")
    return prepare_batch(x[None], fs, cfg)[0]


def prepare_batch(signals: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """``prepare_signal`` of N records of one length at once: (N, leads, T) -> (N, W, leads, n).
    Resampling and filtering act along the last axis, so a batch costs one call, not N."""
    filtered = abs(fs - cfg.fs) >= 1e-9 or cfg.bandpass is not None
    x = np.asarray(signals, dtype=np.float64 if filtered else np.float32)  # float64 only where it filters
    if x.ndim != 3:
        raise ValueError(f"expected (records, leads, samples) signals, got shape {x.shape}")
    x = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    x = resample(x, fs, cfg.fs)
    if cfg.bandpass is not None and x.shape[-1] > 1:
        x = bandpass(x, cfg.fs, *cfg.bandpass)
    n = cfg.n_samples
    if x.shape[-1] < n:
        x = np.pad(x, ((0, 0), (0, 0), (0, n - x.shape[-1])))
    count = 1 if cfg.windows == "first" else x.shape[-1] // n
    windows = x[..., : count * n].reshape(*x.shape[:2], count, n).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(windows, dtype=np.float32)


def normalize(x: np.ndarray, mode: str) -> np.ndarray:
    """Normalise each window (last two axes: leads x samples) independently."""
    x = np.asarray(x, dtype=np.float32)
    if mode == "none":
        return x
    if mode == "minmax":  # the reference: whole 12 x n array to [0, 1]
        lo = x.min(axis=(-2, -1), keepdims=True)
        hi = x.max(axis=(-2, -1), keepdims=True)
        return (x - lo) / np.maximum(hi - lo, 1e-6)
    if mode == "zscore":  # per lead
        mu = x.mean(axis=-1, keepdims=True)
        sd = x.std(axis=-1, keepdims=True)
        return (x - mu) / np.maximum(sd, 1e-6)
    raise ValueError(f"unknown normalize mode {mode!r}")


def preprocess(signal: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """(leads, T) mV -> (W, leads, n) float32 model input."""
    return normalize(prepare_signal(signal, fs, cfg), cfg.normalize)


def preprocess_batch(signals: np.ndarray, fs: float, cfg: PreprocessConfig) -> np.ndarray:
    """(N, leads, T) mV of one length -> (N, W, leads, n) float32 model input."""
    return normalize(prepare_batch(signals, fs, cfg), cfg.normalize)
