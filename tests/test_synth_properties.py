"""Properties of every simulated ECG, over 29,668 records: finite, physiological, exact limb
leads, and the rates, intervals and axes its findings promise (docs/synth.md, "Findings").

Records, none left out: the sampler's own mix (5 seeds x 2048), every set of findings the sampler
allows with one rhythm and up to three other findings (6476 sets), each forced on 3 ECGs (larger
sets come from the mix), and the 100 ECGs of the blow-up reported in issue 10. Signals are simulated without noise, at the simulator's only
rate, 500 Hz: the promises are about the heart, and noise is added after it. Each batch is one
test case, so that a failure names the records (seed, index, findings) that broke a promise.
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from melp.data.leads import CANONICAL_LEADS
from melp.synth import simulate
from melp.synth.findings import FINDINGS, INDEX, RHYTHMS, compatible, names_of

SEEDS, PER_SEED = range(5), 2048  # the sampler's mix
PER_SET, BATCH = 3, 1024  # forced sets: ECGs per set, ECGs per batch
MAX_OTHERS = 3
MAX_MV = 8.0  # physiological ceiling of any lead before noise
L = {name: i for i, name in enumerate(CANONICAL_LEADS)}


def allowed_sets(max_others: int = MAX_OTHERS) -> list[list[str]]:
    """Every finding set the sampler allows: one rhythm and up to max_others other findings."""
    others = [f for f in FINDINGS if f not in RHYTHMS and f != "NORM"]
    return [
        [rhythm, *extra]
        for rhythm in RHYTHMS
        for k in range(max_others + 1)
        for extra in itertools.combinations(others, k)
        if compatible([rhythm, *extra])
    ]


def _forced_batches() -> list[list[list[str]]]:
    lists = [s for s in allowed_sets() for _ in range(PER_SET)]
    return [lists[i : i + BATCH] for i in range(0, len(lists), BATCH)]


FORCED = _forced_batches()


def _violations(batch, label: str) -> list[str]:
    """One line per broken promise: the record, what broke, its findings."""
    x = batch.signals
    m = batch.measurements
    has = lambda name: batch.findings[:, INDEX[name]]  # noqa: E731
    peak = np.abs(x).max((1, 2))  # NaN and inf survive the max
    i, ii = x[:, L["I"]], x[:, L["II"]]
    derived = {"III": ii - i, "aVR": -(i + ii) / 2, "aVL": i - ii / 2, "aVF": ii - i / 2}
    limb_error = np.max([np.abs(x[:, L[name]] - value).max(1) for name, value in derived.items()], axis=0)
    with_p = ~(has("AFIB") | has("AFLT") | has("PACE") | has("3AVB"))  # P waves that lead to a QRS
    widened = has("RBBB") | has("LBBB") | has("PACE") | has("WPW")
    within = lambda v, lo, hi: (v >= lo - 1e-6) & (v <= hi + 1e-6)  # noqa: E731
    rate, pr, qrs, qtc, axis = m["atrial_rate"], m["pr"], m["qrs"], m["qtc"], m["qrs_axis"]
    qtc_normal = np.where(widened, within(qtc, 390, 468), within(qtc, 370, 448))
    checks = {
        "non-finite value": ~np.isfinite(peak),
        f"lead beyond {MAX_MV} mV": ~(peak <= MAX_MV),
        "limb-lead identity broken": ~(limb_error <= 1e-5),  # float32 rounding of mV values is ~1e-6
        "ventricular rate outside 35-180 bpm": ~within(m["hr"], 35, 180),
        "sinus rate outside 60-100 bpm": has("SR") & ~within(rate, 60, 100),
        "tachycardia outside 101-150 bpm": has("STACH") & ~within(rate, 101, 150),
        "bradycardia outside 38-58 bpm": has("SBRAD") & ~within(rate, 38, 58),
        "flutter waves outside 260-320 /min": has("AFLT") & ~within(rate, 260, 320),
        "paced rate outside 60-80 bpm": has("PACE") & ~within(m["hr"], 60, 80),
        "complete AV block: escape outside 35-50 bpm": has("3AVB") & ~within(m["hr"], 35, 50),
        "complete AV block: sinus P waves outside 60-95 bpm": has("3AVB") & ~within(rate, 60, 95),
        "PR where there are no P waves": ~with_p & np.isfinite(pr),
        "first-degree AV block with PR <= 200 ms": with_p & has("1AVB") & ~within(pr, 200.001, 330),
        "pre-excitation with PR >= 120 ms": with_p & has("WPW") & ~within(pr, 80, 119.999),
        "PR outside 120-200 ms": with_p & ~has("1AVB") & ~has("WPW") & ~within(pr, 120, 200),
        "bundle branch block or paced QRS < 120 ms": (has("RBBB") | has("LBBB") | has("PACE")) & ~(qrs >= 120),
        "pre-excitation QRS < 110 ms": has("WPW") & ~(qrs >= 110),
        "QRS outside 70-110 ms": ~widened & ~has("IRBBB") & ~within(qrs, 70, 109.999),
        "incomplete RBBB QRS outside 100-119 ms": has("IRBBB") & ~within(qrs, 100, 119.999),
        "long QT outside QTc 500-580 ms": has("LNGQT") & ~within(qtc, 500, 580),
        "QTc outside 370-448 ms (+20 ms with a wide QRS)": ~has("LNGQT") & ~qtc_normal,
        "LAFB axis outside -80 to -45 degrees": has("LAFB") & ~within(axis, -80, -45),
        "LAD axis outside -44 to -30 degrees": has("LAD") & ~within(axis, -44, -30),
        "RAD axis outside 100 to 140 degrees": has("RAD") & ~within(axis, 100, 140),
    }
    return [
        f"{label} record {j}: {what} ({', '.join(names_of(batch.findings[j]))})"
        for what, broken in checks.items()
        for j in np.flatnonzero(broken)
    ]


def _assert_promises_hold(batch, label: str) -> None:
    broken = _violations(batch, label)
    assert not broken, f"{len(broken)} broken promise(s):\n" + "\n".join(broken[:20])


def test_enough_records_and_every_allowed_set():
    sets = allowed_sets()
    alone = [[f] if f in RHYTHMS else ["SR", f] for f in FINDINGS if f != "NORM"]
    assert all(s in sets for s in alone)
    assert len(SEEDS) * PER_SEED + len(sets) * PER_SET >= 20_000


@pytest.mark.parametrize("seed", SEEDS)
def test_sampled_mix_keeps_its_promises(seed):
    _assert_promises_hold(simulate(PER_SEED, seed=seed, noise=False), f"simulate({PER_SEED}, seed={seed})")


@pytest.mark.parametrize("part", range(len(FORCED)))
def test_every_allowed_set_keeps_its_promises(part):
    lists = FORCED[part]
    batch = simulate(len(lists), seed=1000 + part, findings=lists, noise=False)
    _assert_promises_hold(batch, f"forced batch {part}")


def test_reported_blow_up_is_gone():
    """simulate(100, seed=7) had an RBBB + LVH + 1AVB record reaching 6231 mV (issue 10)."""
    batch = simulate(100, seed=7, noise=False)
    _assert_promises_hold(batch, "simulate(100, seed=7)")
    both = batch.findings[:, INDEX["RBBB"]] & batch.findings[:, INDEX["LVH"]]
    assert both.any()
