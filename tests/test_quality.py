"""The signal-quality gate's QRS test: ECGs pass (most by the quick test alone), noise fails."""
from __future__ import annotations

import numpy as np
import pytest

from melp.data import quality
from melp.data.leads import CANONICAL_LEADS
from melp.data.readers import Record
from melp.synth import simulate

FS = 500.0


def _record(signal) -> Record:
    return Record(np.asarray(signal, np.float32), FS, list(CANONICAL_LEADS), "test", {})


@pytest.fixture(scope="module")
def ecgs() -> np.ndarray:
    return simulate(30, seed=0).signals


def test_simulated_ecgs_pass_mostly_by_the_quick_test(ecgs, monkeypatch):
    assert all(quality.assess(_record(x)).passed for x in ecgs)
    full_checks = []
    monkeypatch.setattr(quality, "_acceptable", lambda lead, fs: full_checks.append(1) or True)
    for x in ecgs:
        quality.has_qrs(x, FS, np.ones(12, bool))
    assert len(full_checks) <= 3  # the slow zhao2018 check is for the few the quick test leaves open


def test_baseline_wander_does_not_hide_qrs(ecgs):
    t = np.arange(ecgs.shape[-1]) / FS
    wander = 1.5 * np.sin(2 * np.pi * 0.15 * t)  # 3 mV swings, much larger than the beats
    assert quality.assess(_record(ecgs[0] + wander)).passed


@pytest.mark.parametrize("noise", ["white", "uniform", "brown", "sine"])
def test_noise_has_no_qrs(noise):
    rng = np.random.default_rng(0)
    shape = (12, 5000)
    signal = {"white": lambda: rng.normal(0, 0.5, shape),
              "uniform": lambda: rng.uniform(-1, 1, shape),
              "brown": lambda: np.cumsum(rng.normal(0, 0.02, shape), axis=1),
              "sine": lambda: np.tile(np.sin(2 * np.pi * 7 * np.arange(5000) / FS), (12, 1))}[noise]()
    verdict = quality.assess(_record(signal))
    assert not verdict.passed and "no_qrs" in verdict.failures()


def test_other_rates_than_500_hz(ecgs):
    from scipy.signal import resample_poly

    for fs, (up, down) in {257.0: (257, 500), 1000.0: (2, 1)}.items():
        x = resample_poly(ecgs[1], up, down, axis=-1)
        assert quality.has_qrs(x, fs, np.ones(12, bool))
