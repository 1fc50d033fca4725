"""Recording noise, added to the recorded channels (I, II, V1-V6) before the limb leads are derived.

A share of the ECGs is clean; the others get amplifier noise and a random mix of baseline wander
(respiration, movement), mains hum (50 or 60 Hz), muscle noise (broadband bursts), electrode
motion (a slow transient on one electrode) and a per-channel gain error. The broadband noise passes
the recorder's low-pass front end, as in real machines: 150 Hz (the diagnostic bandwidth) or, in
a share of recordings, a 40 Hz "muscle filter", which also damps the mains hum. Unfiltered white
noise made the simulated chest leads move 4-10x more from sample to sample than real ones.

All random parameters are drawn for the whole batch at once; the waveforms are then added ECG by
ECG in place (views, no batch-sized temporaries), which is several times faster than fancy-indexed
batch arithmetic on 8 x 5000 arrays. White noise is cut from one pool per batch at random offsets.
"""
from __future__ import annotations

import numpy as np
from scipy.signal import butter, sosfilt

P_CLEAN = 0.35
# mains hum is the commonest high-frequency noise of real recordings (45-65 Hz holds 0.2-0.7 % of
# their power against 0.02-0.2 % in simulated ones before it was drawn this often)
P_TYPE = {"wander": 0.8, "mains": 0.65, "muscle": 0.35, "motion": 0.25}
POOL = 1 << 17
LOWPASS_HZ = (150.0, 40.0)  # the recorder's front end: diagnostic bandwidth, or the muscle filter
P_MUSCLE_FILTER = 0.3
LOWPASS_ORDER = 2


def _lowpass_pool(pool: np.ndarray, cutoff: float, fs: float) -> np.ndarray:
    """White noise -> the recorder's band, rescaled to unit RMS (levels stay RMS levels)."""
    if cutoff >= 0.45 * fs:
        return pool
    band = sosfilt(butter(LOWPASS_ORDER, cutoff, fs=fs, output="sos"), pool).astype(np.float32)
    return band / band.std()


def _lowpass_gain(f: np.ndarray, cutoff: np.ndarray) -> np.ndarray:
    """|H(f)| of a Butterworth low-pass of LOWPASS_ORDER: how much of the mains hum it lets through."""
    return 1.0 / np.sqrt(1.0 + (f / cutoff) ** (2 * LOWPASS_ORDER))


def add_noise(x: np.ndarray, rng: np.random.Generator, fs: float, enabled: bool = True) -> np.ndarray:
    """Add noise to x (n, channels, T) in place; returns the (n,) 'noisy' flags."""
    n, c, t_len = x.shape
    if not enabled:
        return np.zeros(n, dtype=bool)
    f32 = np.float32
    t = np.arange(t_len, dtype=f32) / f32(fs)
    noisy = rng.random(n) >= P_CLEAN
    use = {kind: noisy & (rng.random(n) < p) for kind, p in P_TYPE.items()}

    white = rng.standard_normal(POOL + t_len, dtype=f32)
    pools = [_lowpass_pool(white, cutoff, fs) for cutoff in LOWPASS_HZ]
    muscle_filter = rng.random(n) < P_MUSCLE_FILTER  # which front end recorded each ECG
    offsets = rng.integers(0, POOL, (n, 2, c))  # amplifier, muscle
    amp_level = rng.uniform(0.001, 0.004, n).astype(f32)  # a few microvolts, as modern amplifiers
    muscle_level = rng.uniform(0.005, 0.03, (n, c, 1)).astype(f32)
    muscle_centre = rng.uniform(0, t[-1], n).astype(f32)
    muscle_width = rng.uniform(0.5, 4.0, n).astype(f32)
    wander_f = rng.uniform(0.05, 0.5, (n, 2, 1)).astype(f32)
    wander_phase = rng.uniform(0, 2 * np.pi, (n, 2, 1)).astype(f32)
    wander_amp = rng.uniform(0.02, 0.2, (n, 2, 1)).astype(f32)
    wander_lead = rng.uniform(0.3, 1.0, (n, c, 1)).astype(f32)
    mains_f = rng.choice([50.0, 60.0], n).astype(f32)
    mains_phase = rng.uniform(0, 2 * np.pi, n).astype(f32)
    cutoff = np.asarray(LOWPASS_HZ, dtype=f32)[muscle_filter.astype(int)]  # each ECG's front end
    mains_lead = rng.uniform(0.002, 0.02, (n, c, 1)).astype(f32) * _lowpass_gain(mains_f, cutoff)[:, None, None]
    motion_channel = rng.integers(0, c, n)
    motion_centre = rng.uniform(0.5, t[-1] - 0.5, n).astype(f32)
    motion_width = rng.uniform(0.08, 0.35, n).astype(f32)
    motion_amp = rng.uniform(-1.0, 1.0, n).astype(f32)
    gain = rng.uniform(0.93, 1.07, (n, c, 1)).astype(f32)

    for i in np.flatnonzero(noisy):
        xi, pool = x[i], pools[int(muscle_filter[i])]
        xi += amp_level[i] * pool[offsets[i, 0, :, None] + np.arange(t_len)]
        if use["muscle"][i]:
            envelope = f32(0.3) + np.exp(-0.5 * np.square((t - muscle_centre[i]) / muscle_width[i]))
            xi += muscle_level[i] * envelope * pool[offsets[i, 1, :, None] + np.arange(t_len)]
        if use["wander"][i]:
            wave = (wander_amp[i] * np.sin(f32(2 * np.pi) * wander_f[i] * t + wander_phase[i])).sum(0)
            xi += wander_lead[i] * wave
        if use["mains"][i]:
            xi += mains_lead[i] * np.sin(f32(2 * np.pi) * mains_f[i] * t + mains_phase[i])
        if use["motion"][i]:
            xi[motion_channel[i]] += motion_amp[i] * np.exp(-0.5 * np.square((t - motion_centre[i]) / motion_width[i]))
        xi *= gain[i]
    return noisy
