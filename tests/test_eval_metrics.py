"""Metrics, class descriptions and the probe's split: fast checks against independent computations."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from sklearn.metrics import f1_score, roc_auc_score

from melp.eval.data import EvalSet
from melp.eval.descriptions import default_descriptions, descriptions_for
from melp.eval.metrics import bootstrap_macro_auroc, classification_summary, max_f1, mean_std, per_class_auroc
from melp.eval.probe import probe_split
from melp.eval.retrieval import recall_at_k


def _random_task(n=200, c=4, seed=0):
    rng = np.random.default_rng(seed)
    y = (rng.random((n, c)) < 0.25).astype(float)
    s = rng.random((n, c)) + 0.4 * y
    s[:, 1] = np.round(s[:, 1], 1)  # ties
    return y, s


def test_auroc_matches_sklearn_and_skips_classes_without_positives():
    y, s = _random_task()
    y[:, 3] = 0  # no positive
    auc = per_class_auroc(y, s)
    for c in range(3):
        assert auc[c] == pytest.approx(roc_auc_score(y[:, c], s[:, c]), abs=1e-12)
    assert np.isnan(auc[3])
    summary = classification_summary(y, s, ["a", "b", "c", "d"], n_boot=200)
    assert summary["skipped"] == [{"class": "d", "reason": "no positive record"}]
    assert summary["per_class"]["d"]["auroc"] is None and summary["n_scored_classes"] == 3
    expected = np.mean([roc_auc_score(y[:, c], s[:, c]) for c in range(3)])
    assert summary["macro_auroc"] == pytest.approx(expected, abs=1e-12)
    lo, hi = summary["macro_auroc_ci"]
    assert lo < summary["macro_auroc"] < hi


def test_max_f1_is_best_threshold():
    y, s = _random_task(n=80, c=2, seed=3)
    got = max_f1(y, s)
    for c in range(2):
        brute = max(f1_score(y[:, c], s[:, c] >= t) for t in np.unique(s[:, c]))
        assert got[c] == pytest.approx(brute, abs=1e-12)


def test_bootstrap_is_seeded_and_narrows_with_more_records():
    y, s = _random_task(n=100)
    assert bootstrap_macro_auroc(y, s, 300, seed=1) == bootstrap_macro_auroc(y, s, 300, seed=1)
    y2, s2 = np.tile(y, (8, 1)), np.tile(s, (8, 1))
    w1 = np.diff(bootstrap_macro_auroc(y, s, 300, seed=1))[0]
    w8 = np.diff(bootstrap_macro_auroc(y2, s2, 300, seed=1))[0]
    assert w8 < 0.6 * w1


def test_mean_std_over_seeds():
    assert mean_std([0.7, 0.8, 0.9]) == {"mean": pytest.approx(0.8), "std": pytest.approx(0.1), "n": 3}
    assert mean_std([0.7])["std"] == 0.0


def test_recall_at_k_counts_identical_reports():
    sim = np.array([[0.1, 0.9, 0.0], [0.8, 0.1, 0.0], [0.0, 0.5, 0.4]])
    relevant = np.eye(3, dtype=bool)
    r = recall_at_k(sim, relevant, ks=(1, 2))
    assert r == {1: 0.0, 2: 1.0}
    relevant[0, 1] = True  # query 0's report is identical to report 1
    assert recall_at_k(sim, relevant, ks=(1,))[1] == pytest.approx(1 / 3)


SECTIONS = {"ptbxl-super": 5, "ptbxl-sub": 23, "ptbxl-form": 19, "ptbxl-rhythm": 12, "cpsc2018": 9, "code15": 6}


def test_shipped_descriptions_cover_the_benchmarks():
    shipped = default_descriptions()
    for section, count in SECTIONS.items():
        assert len(shipped[section]) == count, section
    found, missing = descriptions_for("cpsc2018", ["NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD", "STE"])
    assert not missing and len(found) == 9
    found, missing = descriptions_for("super", ["NORM", "MI", "STTC", "CD", "HYP"])  # cache task name
    assert not missing


def test_cinc_codes_fall_back_to_snomed_and_unknown_codes_are_listed():
    found, missing = descriptions_for("cinc", ["164889003", "999999999"])
    assert "atrial fibrillation" in found["164889003"][0]
    assert missing == [{"class": "999999999", "reason": "no description for task 'cinc' (pass --descriptions)"}]


def test_user_descriptions_flat_nested_and_file(tmp_path):
    found, _ = descriptions_for("cpsc2018", ["AFIB"], {"AFIB": "my words"})
    assert found["AFIB"] == ["my words"]
    path = tmp_path / "d.yaml"
    path.write_text(yaml.safe_dump({"cpsc2018": {"afib": ["one", "two"]}}))
    found, _ = descriptions_for("cpsc2018", ["AFIB"], str(path))
    assert found["AFIB"] == ["one", "two"]  # matching ignores case
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        descriptions_for("cpsc2018", ["AFIB"], str(tmp_path / "nope.yaml"))


def test_synth_descriptions_differ_from_the_simulator_statements():
    from melp import synth

    statements_file = Path(synth.__file__).with_name("statements.yaml")
    findings = yaml.safe_load(statements_file.read_text())["findings"]
    found, missing = descriptions_for("synth", list(synth.FINDINGS))
    assert not missing
    for name, texts in found.items():
        for text in texts:
            for statement in findings[name]["statements"]:
                if len(statement.split()) >= 2:  # a multi-word statement never appears verbatim
                    assert statement.lower() not in text.lower(), (name, statement)


def _set(subjects, splits):
    n = len(subjects)
    return EvalSet.from_arrays(np.zeros((n, 12, 10), np.float32), np.zeros((n, 1)), ["x"], fs=1,
                               subjects=subjects, splits=splits)


def test_probe_split_fixed_by_seed_and_patient_disjoint():
    rng = np.random.default_rng(0)
    subjects = np.array([f"p{i}" for i in rng.integers(0, 400, 2000)])
    splits = rng.choice(["train", "val", "test"], 2000, p=[0.7, 0.1, 0.2])  # by record: subjects straddle
    data = _set(subjects, splits)
    a, b, c = probe_split(data, 0.01, 0), probe_split(data, 0.01, 0), probe_split(data, 0.01, 1)
    assert np.array_equal(a["train"], b["train"]) and not np.array_equal(a["train"], c["train"])
    test_subjects = set(subjects[splits == "test"])
    eligible = sum(sp == "train" and s not in test_subjects for s, sp in zip(subjects, splits))
    assert 0.01 * eligible <= len(a["train"]) < 0.01 * eligible + 20  # whole subjects
    for split in (a, c, probe_split(data, 1.0, 0)):
        assert not set(subjects[split["train"]]) & set(subjects[split["test"]])
        assert set(splits[split["train"]]) == {"train"}
    assert np.array_equal(a["test"], np.flatnonzero(splits == "test"))


def test_probe_split_needs_all_three_splits():
    with pytest.raises(ValueError, match="val split is empty"):
        probe_split(_set(np.array(["a", "b"]), np.array(["train", "test"])), 0.1, 0)
