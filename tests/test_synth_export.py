"""Exported layouts read back through wfdb, scipy and the project's adapters, with the right labels."""
from __future__ import annotations

import ast

import numpy as np
import pandas as pd
import pytest
import scipy.io
import wfdb
from scipy.signal import resample_poly

import melp
from melp.cli import main
from melp.data.adapters import get_adapter
from melp.synth import export, simulate
from melp.synth.exporters.cinc import dx_codes
from melp.synth.exporters.ptbxl import scp_codes
from melp.synth.findings import table
from melp.synth.plot import find_report, record_title

N, SEED = 12, 4


@pytest.fixture(scope="module")
def truth():
    return simulate(N, SEED)


def _quantum(gain):
    return 0.5 / gain + 1e-6


def test_mimic_layout(tmp_path, truth):
    export("mimic-iv-ecg", tmp_path, N, SEED)
    records = pd.read_csv(tmp_path / "record_list.csv")
    mm = pd.read_csv(tmp_path / "machine_measurements.csv")
    assert list(records.columns) == ["subject_id", "study_id", "file_name", "ecg_time", "path"]
    assert [f"report_{k}" for k in range(18)] == [c for c in mm.columns if c.startswith("report_")]
    for col in ("rr_interval", "p_onset", "qrs_axis", "bandwidth", "filtering"):
        assert col in mm.columns
    order = [0, 1, 2, 3, 5, 4, 6, 7, 8, 9, 10, 11]  # MIMIC writes aVF before aVL
    for i, rec in enumerate(records.itertuples()):
        sid = str(rec.subject_id)
        assert rec.path == f"files/p{sid[:4]}/p{sid}/s{rec.study_id}/{rec.study_id}"
        r = wfdb.rdrecord(str(tmp_path / rec.path))
        assert r.fs == 500 and r.sig_len == 5000
        assert r.sig_name == ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
        assert np.abs(r.p_signal.T - truth.signals[i][order]).max() <= _quantum(200)
        row = mm[mm.study_id == rec.study_id].iloc[0]
        parts = [row[f"report_{k}"] for k in range(18) if isinstance(row[f"report_{k}"], str)]
        assert parts == truth.statements[i]
        assert find_report(tmp_path / rec.path, {}) == ". ".join(parts) + "."  # `melp plot` titles
    table_, tasks, rejects = get_adapter("mimic-iv-ecg").load_table(tmp_path)
    assert len(table_) == N and not rejects and tasks == {}
    assert "sinus" in " ".join(table_.report) or "fibrillation" in " ".join(table_.report)


def test_ptbxl_layout(tmp_path, truth):
    export("ptbxl", tmp_path, N, SEED)
    db = pd.read_csv(tmp_path / "ptbxl_database.csv")
    statements = pd.read_csv(tmp_path / "scp_statements.csv", index_col=0)
    for col in ("ecg_id", "patient_id", "report", "scp_codes", "strat_fold", "filename_lr", "filename_hr"):
        assert col in db.columns
    for col in ("diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"):
        assert col in statements.columns
    assert db.strat_fold.between(1, 10).all()
    assert db.groupby("patient_id").strat_fold.nunique().max() == 1  # folds split patients, not rows
    for i, rec in enumerate(db.itertuples()):
        assert rec.filename_hr == f"records500/00000/{rec.ecg_id:05d}_hr"
        codes = ast.literal_eval(rec.scp_codes)
        assert codes == scp_codes(truth.finding_names(i))
        assert set(codes) <= set(statements.index)
        hr = wfdb.rdrecord(str(tmp_path / rec.filename_hr))
        lr = wfdb.rdrecord(str(tmp_path / rec.filename_lr))
        assert hr.sig_name[3:6] == ["AVR", "AVL", "AVF"] and lr.fs == 100 and lr.sig_len == 1000
        assert np.abs(hr.p_signal.T - truth.signals[i]).max() <= _quantum(1000)
        assert find_report(tmp_path / rec.filename_hr, {}) == truth.reports[i].lower()
        low = resample_poly(truth.signals[i], 1, 5, axis=-1)
        assert np.abs(lr.p_signal.T - low).max() <= _quantum(1000) + 1e-4
    table_, tasks, _ = get_adapter("ptbxl").load_table(tmp_path)
    assert set(tasks["super"]) <= {"NORM", "MI", "STTC", "CD", "HYP"}
    by_id = table_.set_index("record_id")
    for i in range(N):
        names = truth.finding_names(i)
        expected = {table()["scp_statements"][c]["diagnostic_class"] for c in scp_codes(names)} - {None}
        assert set(by_id.loc[str(i + 1), "labels_super"]) == expected
        assert ("NORM" in expected) == ("NORM" in names)


def test_cinc_layout(tmp_path, truth):
    export("cinc", tmp_path, N, SEED)
    for i in range(N):
        stem = tmp_path / "g1" / f"A{i + 1:04d}"
        header = (stem.with_suffix(".hea")).read_text().splitlines()
        assert header[1].split()[1:3] == ["16+24", "1000/mV"]
        val = scipy.io.loadmat(str(stem.with_suffix(".mat")))["val"]
        assert val.dtype == np.int16 and val.shape == (12, 5000)
        r = wfdb.rdrecord(str(stem))
        assert np.abs(r.p_signal.T - truth.signals[i]).max() <= _quantum(1000)
        dx = [c for c in r.comments if c.startswith("Dx:")][0]
        assert dx == "Dx: " + ",".join(dx_codes(truth.finding_names(i)))
        assert any(c.startswith("Age: ") for c in r.comments) and any(c.startswith("Sex: ") for c in r.comments)
    cpsc, _, rejects = get_adapter("cpsc2018").load_table(tmp_path)
    assert len(cpsc) + len(rejects) == N
    normal = {str(r.record_id): "NORM" in r.labels_cpsc2018 for r in cpsc.itertuples()}
    for i in range(N):
        if f"A{i + 1:04d}" in normal:
            assert normal[f"A{i + 1:04d}"] == ("NORM" in truth.finding_names(i))


def test_synth_and_plot_commands(tmp_path):
    assert main(["synth", "--format", "cinc", "--n", "3", "--seed", "1", "--out", str(tmp_path / "c")]) == 0
    assert sorted(p.name for p in (tmp_path / "c" / "g1").iterdir())[:2] == ["A0001.hea", "A0001.mat"]
    png = tmp_path / "ecg.png"
    assert main(["plot", str(tmp_path / "c" / "g1" / "A0001"), "-o", str(png)]) == 0
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    record = melp.read_record(tmp_path / "c" / "g1" / "A0001.hea")
    title = record_title(tmp_path / "c" / "g1" / "A0001.hea", record)
    assert title.startswith("record A0001 | 500 Hz | 10 s\nDx: ") and "(" in title  # codes with their names
    with pytest.raises(ValueError, match="unknown export format"):
        export("ptb", tmp_path / "x", 2)
