"""The simulator's contract: shapes, exact limb-lead identities, determinism, findings, reports."""
from __future__ import annotations

import numpy as np
import pytest

from melp.data.leads import CANONICAL_LEADS
from melp.synth import FINDINGS, simulate
from melp.synth.findings import INDEX, RHYTHMS, compatible, sample_findings, table
from melp.synth.simulate import CHUNK, iter_batches

L = {name: i for i, name in enumerate(CANONICAL_LEADS)}


@pytest.fixture(scope="module")
def batch():
    return simulate(64, seed=7)


def test_shapes_and_units(batch):
    assert batch.signals.shape == (64, 12, 5000) and batch.signals.dtype == np.float32
    assert batch.fs == 500 and tuple(batch.leads) == CANONICAL_LEADS
    assert batch.findings.shape == (64, len(FINDINGS)) and batch.findings.dtype == bool
    assert len(batch.reports) == len(batch.statements) == 64
    assert np.isfinite(batch.signals).all()
    # millivolts: QRS complexes of a few mV at most, not ADC units or volts
    assert 0.15 < np.abs(batch.signals).max(axis=(1, 2)).min() and np.abs(batch.signals).max() < 15


def test_limb_lead_identities_hold_exactly_with_noise(batch):
    x = batch.signals.astype(np.float64)
    i, ii = x[:, L["I"]], x[:, L["II"]]
    tol = 1e-5
    assert np.abs(x[:, L["III"]] - (ii - i)).max() < tol
    assert np.abs(x[:, L["aVR"]] + (i + ii) / 2).max() < tol
    assert np.abs(x[:, L["aVL"]] - (i - ii / 2)).max() < tol
    assert np.abs(x[:, L["aVF"]] - (ii - i / 2)).max() < tol
    assert batch.noisy.any() and not batch.noisy.all()


def test_determinism_and_streaming(batch):
    again = simulate(64, seed=7)
    assert np.array_equal(again.signals, batch.signals) and again.reports == batch.reports
    other = simulate(64, seed=8)
    assert not np.allclose(other.signals, batch.signals)
    streamed = list(iter_batches(64, seed=7))
    assert np.array_equal(np.concatenate([b.signals for b in streamed]), batch.signals)


def test_full_chunks_do_not_depend_on_n():
    small = simulate(CHUNK, seed=2, noise=False)
    large = simulate(CHUNK + 3, seed=2, noise=False)
    assert np.array_equal(small.signals, large.signals[:CHUNK])
    assert large.subject_ids[CHUNK:].min() >= CHUNK  # subject ids never collide across chunks


def test_findings_are_coherent(batch):
    for row in batch.findings:
        names = [FINDINGS[j] for j in np.flatnonzero(row)]
        assert sum(n in RHYTHMS for n in names) == 1
        assert compatible(names)
        if row[INDEX["NORM"]]:
            assert names == ["NORM", "SR"]


def test_prevalence_is_balanced_for_learning():
    rng = np.random.default_rng(0)
    f = sample_findings(4000, rng)
    share = dict(zip(FINDINGS, f.mean(0)))
    assert 0.3 <= share["NORM"] <= 0.42
    for name in FINDINGS:
        assert share[name] > 0.008, name
    # PTB-XL super classes each well represented
    super_of = {}
    for name, entry in table()["findings"].items():
        classes = {table()["scp_statements"][c]["diagnostic_class"] for c in entry["scp"]} - {None}
        super_of[name] = classes
    for cls in ("MI", "STTC", "CD", "HYP"):
        members = [INDEX[n] for n, c in super_of.items() if cls in c]
        assert 0.05 <= f[:, members].any(1).mean() <= 0.3, cls


def test_forced_findings_and_impossible_combinations():
    b = simulate(3, seed=1, findings=[["AFIB", "LVH"], ["RBBB", "LAFB"], []], noise=False)
    assert b.finding_names(0) == ["AFIB", "LVH"]
    assert b.finding_names(1) == ["SR", "RBBB", "LAFB"]
    assert b.finding_names(2) == ["NORM", "SR"]
    with pytest.raises(ValueError, match="cannot occur together"):
        simulate(1, findings=["LBBB", "RBBB"])
    with pytest.raises(ValueError, match="cannot occur together"):
        simulate(1, findings=["AFIB", "1AVB"])
    with pytest.raises(ValueError, match="unknown finding"):
        simulate(1, findings=["STEMI"])


def test_reports_name_each_finding_with_paraphrases(batch):
    entries = table()["findings"]
    summaries = {s for lines in table()["summary"].values() for s in lines}
    folded = 0
    for names_row, statements, report in zip(batch.findings, batch.statements, batch.reports):
        names = [FINDINGS[j] for j in np.flatnonzero(names_row)]
        assert statements[-1] in summaries
        body = list(statements[:-1])
        rhythm = [n for n in names if n in RHYTHMS]
        # the rhythm comes first, possibly with one conduction/ectopy finding folded in
        if body[0] not in entries[rhythm[0]]["statements"]:
            # the longest match: a rhythm statement may itself hold "with"
            first = max((s for s in entries[rhythm[0]]["statements"] if body[0].startswith(s + " with ")),
                        key=len, default=None)
            assert first, f"{body[0]!r} does not start with a statement of {rhythm[0]}"
            joined = body[0][len(first) + len(" with "):]
            body[0:1] = [first, joined[0].upper() + joined[1:]]
            folded += 1
        others = [n for n in names if n not in RHYTHMS and n != "NORM"]
        assert len(body) == 1 + len(others)
        for statement in body[1:]:  # every other finding exactly once, in some order
            owners = [n for n in others if statement in entries[n]["statements"]]
            assert owners, f"{statement!r} names none of {others}"
            others.remove(owners[0])
        assert not others
        assert report == " ".join(s + "." for s in statements)
        assert len(report.split()) >= 4
    assert folded > 0
    worded = simulate(40, seed=3, findings=["LVH"], noise=False)
    assert len({s[1] for s in worded.statements}) > 1  # the same finding is worded several ways


def test_subjects_have_several_ecgs_and_keep_their_anatomy(batch):
    ids, counts = np.unique(batch.subject_ids, return_counts=True)
    assert (counts > 1).any() and len(ids) > 10
    for sid in ids[counts > 1]:
        rows = batch.subject_ids == sid
        assert len(set(batch.age[rows])) == 1 and len(set(batch.sex[rows])) == 1


def test_measurements_describe_the_signal(batch):
    m = batch.measurements
    no_pr = batch.findings[:, [INDEX[x] for x in ("AFIB", "AFLT", "PACE", "3AVB")]].any(1)
    assert np.isnan(m["pr"][no_pr]).all() and np.isfinite(m["pr"][~no_pr]).all()
    assert ((m["hr"] > 30) & (m["hr"] < 200)).all()
    lad = batch.findings[:, INDEX["LAFB"]]
    assert (m["qrs_axis"][lad] <= -45).all()
