"""Recording noise, added to the recorded channels (I, II, V1-V6) before the limb leads are derived.

A share of the ECGs is clean; the others get amplifier noise and a random mix of baseline wander
(respiration, movement), mains hum (50 or 60 Hz), muscle noise (broadband bursts), electrode
motion (a slow transient on one electrode) and a per-channel gain error.

White noise is cut from one pool per call at random offsets: drawing tens of millions of normal
variates per batch would cost more than the whole heart model.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

P_CLEAN = 0.35
P_TYPE = {"wander": 0.8, "mains": 0.4, "muscle": 0.35, "motion": 0.25}
POOL = 1 << 16


def _white(rng: np.random.Generator, rows: int, length: int) -> np.ndarray:
    """(rows, length) unit white noise: random windows of one freshly drawn pool."""
    pool = rng.standard_normal(POOL + length, dtype=np.float32)
    return sliding_window_view(pool, length)[rng.integers(0, POOL, rows)]


def add_noise(x: np.ndarray, rng: np.random.Generator, fs: float, enabled: bool = True) -> np.ndarray:
    """Add noise to x (n, channels, T) in place; returns the (n,) 'noisy' flags."""
    n, c, t_len = x.shape
    if not enabled:
        return np.zeros(n, dtype=bool)
    t = np.arange(t_len, dtype=np.float32) / np.float32(fs)
    noisy = rng.random(n) >= P_CLEAN
    noisy_idx = np.flatnonzero(noisy)

    # Amplifier noise everywhere, plus bursts of muscle noise on some: one white draw, one level.
    if noisy_idx.size:
        m = noisy_idx.size
        level = np.broadcast_to(rng.uniform(0.003, 0.01, (m, 1, 1)).astype(np.float32), (m, c, t_len)).copy()
        muscle = rng.random(m) < P_TYPE["muscle"]
        if muscle.any():
            k = int(muscle.sum())
            centre = rng.uniform(0, t[-1], (k, 1))
            width = rng.uniform(0.5, 4.0, (k, 1))
            envelope = (0.3 + np.exp(-0.5 * ((t - centre) / width) ** 2)).astype(np.float32)
            level[muscle] += rng.uniform(0.01, 0.05, (k, c, 1)).astype(np.float32) * envelope[:, None, :]
        x[noisy_idx] += level * _white(rng, m * c, t_len).reshape(m, c, t_len)

    def pick(kind):
        return np.flatnonzero(noisy & (rng.random(n) < P_TYPE[kind]))

    idx = pick("wander")
    if idx.size:
        m = idx.size
        f = rng.uniform(0.05, 0.5, (m, 2, 1)).astype(np.float32)
        ph = rng.uniform(0, 2 * np.pi, (m, 2, 1)).astype(np.float32)
        a = rng.uniform(0.03, 0.3, (m, 2, 1)).astype(np.float32)
        wave = (a * np.sin(np.float32(2 * np.pi) * f * t + ph)).sum(1)  # (m, T)
        x[idx] += rng.uniform(0.3, 1.0, (m, c, 1)).astype(np.float32) * wave[:, None, :]
    idx = pick("mains")
    if idx.size:
        m = idx.size
        f = rng.choice([50.0, 60.0], (m, 1)).astype(np.float32)
        hum = np.sin(np.float32(2 * np.pi) * f * t + rng.uniform(0, 2 * np.pi, (m, 1)).astype(np.float32))
        x[idx] += rng.uniform(0.005, 0.04, (m, c, 1)).astype(np.float32) * hum[:, None, :]
    idx = pick("motion")
    if idx.size:
        m = idx.size
        channel = rng.integers(0, c, m)
        centre = rng.uniform(0.5, t[-1] - 0.5, (m, 1))
        width = rng.uniform(0.08, 0.35, (m, 1))
        bump = rng.uniform(-1.0, 1.0, (m, 1)) * np.exp(-0.5 * ((t - centre) / width) ** 2)
        x[idx, channel] += bump.astype(np.float32)
    if noisy_idx.size:
        x[noisy_idx] *= rng.uniform(0.93, 1.07, (noisy_idx.size, c, 1)).astype(np.float32)
    return noisy
