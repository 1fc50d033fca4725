"""``simulate(n, seed)``: batches of simulated 12-lead ECGs with findings and reports.

Work is done in chunks of CHUNK ECGs, each with its own random stream derived from (seed, chunk
number): a seed always yields the same ECGs, ``iter_batches`` streams exactly the ECGs of
``simulate`` (so exporters never hold more than a chunk), and every full chunk is the same
whatever n is (the first 256 ECGs of ``simulate(1000, s)`` are ``simulate(256, s)``).
"""
from __future__ import annotations

import dataclasses

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from tqdm.auto import tqdm

from melp.data.leads import CANONICAL_LEADS
from melp.synth import generator as gen
from melp.synth import geometry as geo
from melp.synth.findings import FINDINGS, INDEX, names_of, sample_findings, to_multi_hot
from melp.synth.noise import add_noise
from melp.synth.reports import join, report_lists

CHUNK = 256
P_SAME_FINDINGS = 0.7  # a subject's later ECG repeats its findings (chronic disease) this often


@dataclasses.dataclass
class SimBatch:
    """Simulated ECGs: signals (n, 12, 5000) in mV at 500 Hz, canonical lead order."""

    signals: np.ndarray
    findings: np.ndarray  # (n, len(FINDINGS)) bool multi-hot
    reports: list[str]
    statements: list[list[str]]  # the report as its statements (MIMIC report_0, report_1, ...)
    subject_ids: np.ndarray  # (n,) int; several ECGs share a subject
    age: np.ndarray
    sex: np.ndarray  # 0 male, 1 female
    # hr, atrial_rate (bpm: the ventricles', the sinus node's or F waves'), rr, pr, qrs, qt, qtc (ms),
    # p/qrs/t_axis (deg); NaN = none
    measurements: dict[str, np.ndarray]
    noisy: np.ndarray  # (n,) bool: noise other than a trace of amplifier noise was added
    fs: int = gen.FS
    leads: tuple[str, ...] = CANONICAL_LEADS

    def __len__(self) -> int:
        return len(self.signals)

    def finding_names(self, i: int) -> list[str]:
        return names_of(self.findings[i])

    @staticmethod
    def concat(parts: list["SimBatch"], signals: np.ndarray | None = None) -> "SimBatch":
        """Join batches; signals may be given when the parts already wrote into one array."""
        return SimBatch(
            signals=np.concatenate([p.signals for p in parts]) if signals is None else signals,
            findings=np.concatenate([p.findings for p in parts]),
            reports=[r for p in parts for r in p.reports],
            statements=[s for p in parts for s in p.statements],
            subject_ids=np.concatenate([p.subject_ids for p in parts]),
            age=np.concatenate([p.age for p in parts]),
            sex=np.concatenate([p.sex for p in parts]),
            measurements={k: np.concatenate([p.measurements[k] for p in parts]) for k in parts[0].measurements},
            noisy=np.concatenate([p.noisy for p in parts]),
        )


def simulate(n: int, seed: int = 0, *, findings=None, noise: bool = True, progress: bool = False) -> SimBatch:
    """Simulate n ECG-report pairs.

    findings: None to draw them (realistic mix), or finding names to force, either one list for
    all ECGs (e.g. ``["AFIB", "LVH"]``) or one list per ECG; sinus rhythm is added when no rhythm
    is named, and impossible combinations raise ValueError.
    noise: False gives clean signals (a trace of amplifier noise only is left out too).
    """
    if n < 1:
        raise ValueError(f"simulate: n must be >= 1, got {n}")
    forced = None if findings is None else to_multi_hot(list(findings), n)
    signals = np.empty((n, len(CANONICAL_LEADS), gen.N_SAMPLES), dtype=np.float32)
    parts = []
    for start in tqdm(range(0, n, CHUNK), desc="simulating", unit="chunk", disable=not progress):
        m = min(CHUNK, n - start)
        parts.append(_chunk(start, m, seed, forced, noise, signals[start : start + m]))
    return SimBatch.concat(parts, signals)


def iter_batches(n: int, seed: int = 0, *, findings=None, noise: bool = True):
    """simulate(n, seed) as a stream of SimBatch chunks (same ECGs), for writing large exports."""
    forced = None if findings is None else to_multi_hot(list(findings), n)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        yield _chunk(start, m, seed, forced, noise, None)


def _chunk(start, m, seed, forced, noise, out) -> SimBatch:
    c = start // CHUNK
    rng = np.random.default_rng([seed, c])
    chunk_forced = None if forced is None else forced[start : start + m]
    part = _simulate_chunk(m, rng, chunk_forced, noise, out)
    part.subject_ids += c * CHUNK  # global subject ids: a subject never spans two chunks
    return part


def _simulate_chunk(m: int, rng: np.random.Generator, forced, noise: bool, out: np.ndarray) -> SimBatch:
    owner = gen.assign_subjects(m, rng)
    n_subj = int(owner.max()) + 1
    subjects = gen.sample_subjects(n_subj, rng)
    subj = {k: v[owner] for k, v in subjects.items()}
    if forced is None:
        per_subject = sample_findings(n_subj, rng)[owner]
        fresh = sample_findings(m, rng)
        first = np.r_[True, owner[1:] != owner[:-1]]
        keep = first | (rng.random(m) < P_SAME_FINDINGS)
        findings = np.where(keep[:, None], per_subject, fresh)
    else:
        findings = forced

    prm = gen.ecg_parameters(findings, subj, rng)
    times, types = gen.beat_schedule(findings, prm, rng)
    prm["qt"] = prm["qtc"] * np.sqrt(gen.mean_rr(times, prm["rr"]))  # the QTc as read from the rate as read
    beat = gen.conducted_bumps(findings, subj, prm, rng)
    gen.calibrate_voltage(beat, findings, rng)  # first: hypertrophy grows only some QRS forces, turning the axis
    gen.calibrate_axis(beat, findings, prm)

    templates = np.zeros((m, 3, len(geo.RECORDED), gen.W), dtype=np.float32)  # conducted, PAC, PVC
    templates[:, 0] = gen.render_leads(beat)
    for kind, make in ((1, gen.pac_bumps), (2, gen.pvc_bumps)):
        rows = np.flatnonzero((types == kind).any(1))
        if rows.size:
            sub = {k: v[rows] for k, v in beat.items()}
            templates[rows, kind] = gen.render_leads(make(sub, findings[rows], rng))

    recorded = _place(templates, times, types, rng)
    rows, atrial = gen.atrial_waves(findings, prm, times, rng)
    recorded[rows] += geo.project(geo.RECORDED_VECTORS, atrial)
    noisy = add_noise(recorded, rng, gen.FS, enabled=noise)
    signals = geo.derive_12(recorded, out=out)

    statements = report_lists(findings, rng)
    return SimBatch(
        signals=signals,
        findings=findings,
        reports=[join(s) for s in statements],
        statements=statements,
        subject_ids=owner.astype(np.int64),
        age=subj["age"],
        sex=subj["sex"],
        measurements=_measurements(findings, prm, beat, templates[:, 0], times),
        noisy=noisy,
    )


def _place(templates: np.ndarray, times: np.ndarray, types: np.ndarray, rng) -> np.ndarray:
    """Sum each ECG's beat templates at its beat times: (m, 8, N_SAMPLES) recorded channels.

    One vectorised add per beat slot: the k-th beats of all ECGs go in at once (their windows lie
    in different rows, so they never collide), through a writeable window view of the signal.
    """
    m, _, channels, _ = templates.shape
    padded = np.zeros((m, channels, gen.N_SAMPLES + 2 * gen.W), dtype=np.float32)  # beats may overhang
    windows = sliding_window_view(padded, gen.W, axis=2, writeable=True)  # (m, channels, positions, W)
    onset = np.rint(times * gen.FS).astype(np.int64)
    start = onset - gen.PRE + gen.W
    valid = (onset > gen.PRE - gen.W) & (onset < gen.N_SAMPLES + gen.PRE)
    weight = (1.0 + 0.03 * rng.standard_normal(onset.shape)).astype(np.float32)  # beat-to-beat amplitude
    for b in np.flatnonzero(valid.any(0)):
        rows = np.flatnonzero(valid[:, b])
        shapes = templates[rows, types[rows, b]] * weight[rows, b, None, None]  # (k, channels, W)
        windows[rows, :, start[rows, b]] += shapes
    return padded[:, :, gen.W : gen.W + gen.N_SAMPLES]


def _measurements(findings, prm, beat, template, times) -> dict[str, np.ndarray]:
    """Machine-style measurements of each ECG (ground truth of the generator)."""
    rr = gen.mean_rr(times, prm["rr"])
    leads = geo.derive_12(template)
    i_lead, avf = CANONICAL_LEADS.index("I"), CANONICAL_LEADS.index("aVF")

    def axis(lo, hi):
        win = (gen.T_MS[None, :] >= lo[:, None]) & (gen.T_MS[None, :] < hi[:, None])
        return geo.frontal_axis((leads[:, i_lead] * win).sum(1), (leads[:, avf] * win).sum(1))

    qrs_end = beat["qrs_end"]
    no_pr = gen.without_pr(findings)
    no_p = no_pr & ~findings[:, INDEX["3AVB"]]  # complete AV block: P waves, but none leads to a QRS
    pr = np.where(no_pr, np.nan, prm["pr"])
    # the rate the rhythm is named by: the sinus node's (premature beats leave it be) or the F waves'
    atrial_rate = np.where(findings[:, INDEX["AFLT"]], prm["flutter_rate"], np.where(no_p, np.nan, prm["atrial_rate"]))
    return {
        "hr": 60.0 / rr,
        "atrial_rate": atrial_rate,
        "rr": rr * 1000.0,
        "pr": pr,
        "qrs": qrs_end,
        "qt": beat["qt"],
        "qtc": beat["qt"] / np.sqrt(rr),
        "p_axis": np.where(no_pr, np.nan, axis(-prm["pr"], np.zeros(len(pr)))),
        "qrs_axis": axis(np.zeros(len(pr)), qrs_end),
        "t_axis": axis(qrs_end, beat["qt"]),
    }


__all__ = ["SimBatch", "simulate", "FINDINGS"]
