"""Adapters on tiny datasets written in each real layout (and on the real LUDB / cinc-smoke)."""
from pathlib import Path

import numpy as np
import pytest

import melp
from melp.data.adapters import ADAPTERS, get_adapter
from melp.data.adapters.common import hash_split

from datafixtures import (known_signal, write_cinc_mat, write_code15, write_ludb, write_mimic,
                          write_ptbxl)


def test_registry_names_and_unknown():
    assert set(ADAPTERS) == {"mimic-iv-ecg", "ptbxl", "cpsc2018", "csn", "code15", "ludb", "cinc",
                            "folder"}
    for name in ADAPTERS:
        assert get_adapter(name).name == name
    with pytest.raises(KeyError, match="unknown dataset"):
        get_adapter("nope")


def test_hash_split_deterministic_and_proportional():
    ids = [str(i) for i in range(4000)]
    a, b = hash_split(ids), hash_split(list(reversed(ids)))
    assert a == list(reversed(b))  # a subject's split depends on its id only
    frac = {s: a.count(s) / len(a) for s in ("train", "val", "test")}
    assert abs(frac["train"] - 0.7) < 0.03 and abs(frac["val"] - 0.1) < 0.02 and abs(frac["test"] - 0.2) < 0.03


def test_mimic_join_clean_reject_and_subject_split(tmp_path):
    reports = [["Sinus rhythm", "Normal EKG", "***"], ["Sinus rhythm"], ["Atrial  fibrillation", "Abnormal ECG"],
               ["Sinus bradycardia", "Left axis deviation"], ["Sinus tachycardia", "Low QRS voltages"]]
    root = write_mimic(tmp_path, reports, subjects=[10000032, 10000032, 10000099, 10000099, 10000100])
    # a study that has no machine-measurement row
    import pandas as pd
    mm = pd.read_csv(root / "machine_measurements.csv")
    mm[mm["study_id"] != 40689238 + 4].to_csv(root / "machine_measurements.csv", index=False)

    table, tasks, rejects = get_adapter("mimic-iv-ecg").load_table(root)
    assert tasks == {}
    assert list(table["record_id"]) == ["40689238", "40689240", "40689241"]
    assert table.loc[0, "report"] == "sinus rhythm. normal ecg."
    assert dict(rejects) == {"40689239": "report shorter than 4 words",
                             "40689242": "no machine_measurements row for this study_id"}
    assert all(Path(p + ".hea").is_file() for p in table["path"])
    assert table.groupby("subject_id")["split"].nunique().max() == 1
    r = melp.read_record(table.loc[0, "path"])  # MIMIC writes aVF before aVL: read back by name
    np.testing.assert_allclose(r.signal, known_signal(0), atol=6e-4)


def test_ptbxl_tasks_from_statements(tmp_path):
    codes = [{"NORM": 100.0, "SR": 0.0}, {"IMI": 50.0, "NDT": 0.0, "AFIB": 0.0}, {"ABQRS": 0.0}, {"LAFB": 100.0}]
    root = write_ptbxl(tmp_path, codes, folds=[1, 8, 9, 10], patients=[7, 7, 8, 9])
    table, tasks, rejects = get_adapter("ptbxl").load_table(root)
    assert rejects == []
    assert tasks == {"super": ["CD", "MI", "NORM", "STTC"], "sub": ["IMI", "LAFB/LPFB", "NORM", "STTC"],
                     "form": ["ABQRS", "NDT"], "rhythm": ["AFIB", "SR"]}
    assert list(table["split"]) == ["train", "train", "val", "test"]
    row = table.iloc[1]
    assert row["labels_super"] == ["MI", "STTC"] and row["labels_sub"] == ["IMI", "STTC"]
    assert row["labels_form"] == ["NDT"] and row["labels_rhythm"] == ["AFIB"]
    assert table.iloc[2]["labels_super"] == [] and table.iloc[2]["labels_form"] == ["ABQRS"]
    assert row["subject_id"] == "7" and row["report"] == "sinusrhythmus normales ekg 1"
    assert table.iloc[0]["path"].endswith("records500/00000/00001_hr")


def test_ptbxl_bad_scp_codes_is_a_reject(tmp_path):
    root = write_ptbxl(tmp_path, [{"NORM": 100.0}, {"SR": 0.0}], folds=[1, 2], patients=[1, 2])
    import pandas as pd
    db = pd.read_csv(root / "ptbxl_database.csv")
    db.loc[1, "scp_codes"] = "{'SR': 0.0"
    db = pd.concat([db, db.iloc[[0]].assign(ecg_id=3, strat_fold=None)])
    db.to_csv(root / "ptbxl_database.csv", index=False)
    table, _, rejects = get_adapter("ptbxl").load_table(root)
    assert list(table["record_id"]) == ["1"]
    assert rejects[0][0] == "2" and "scp_codes" in rejects[0][1]
    assert rejects[1][0] == "3" and "strat_fold nan is not one of 1-10" in rejects[1][1]


def test_cpsc2018_cinc_layout_with_equivalent_codes(tmp_path):
    write_cinc_mat(tmp_path / "g1", "A0001", known_signal(1), dx=["713427006", "17338001"])
    write_cinc_mat(tmp_path / "g1", "A0002", known_signal(2), dx=["426783006"])
    write_cinc_mat(tmp_path / "g2", "A0003", known_signal(3), dx=["63593006", "999999"])
    write_cinc_mat(tmp_path / "g2", "A0004", known_signal(4), dx=["10370003"])
    table, tasks, rejects = get_adapter("cpsc2018").load_table(tmp_path)
    assert tasks["cpsc2018"] == ["NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD", "STE"]
    labels = dict(zip(table["record_id"], table["labels_cpsc2018"]))
    assert labels == {"A0001": ["CRBBB", "VPC"], "A0002": ["NORM"], "A0003": ["PAC"], "A0004": []}
    assert get_adapter("cpsc2018").REQUIRE_LABEL["cpsc2018"]  # unlabelled A0004 is left to the dataset


def test_cpsc2018_original_layout(tmp_path):
    folder = tmp_path / "TrainingSet1"
    folder.mkdir()
    import scipy.io
    for name in ("A0001", "A0002"):
        scipy.io.savemat(folder / f"{name}.mat", {"ECG": {"sex": "Male", "age": 60, "data": known_signal(1)}})
    (folder / "REFERENCE.csv").write_text(
        "Recording,First_label,Second_label,Third_label\nA0001,5,7,\nA0002,1,,\nA0003,2,,\n")
    table, _, rejects = get_adapter("cpsc2018").load_table(tmp_path)
    assert dict(zip(table["record_id"], table["labels_cpsc2018"])) == {"A0001": ["CRBBB", "VPC"], "A0002": ["NORM"]}
    assert rejects[0][0] == "A0003" and "no A0003.mat" in rejects[0][1]
    r = melp.read_record(table.iloc[0]["path"])
    np.testing.assert_allclose(r.signal, known_signal(1), atol=1e-5)


def test_csn_unknown_codes_kept(tmp_path):
    (tmp_path / "ConditionNames_SNOMED-CT.csv").write_text(
        "Acronym Name,Full Name,Snomed_CT\nSB,Sinus Bradycardia,426177001\nSR,Sinus Rhythm,426783006\n"
        "AFIB,Atrial Fibrillation,164889003\n")
    rec = tmp_path / "WFDBRecords" / "01" / "010"
    write_cinc_mat(rec, "JS00001", known_signal(1), dx=["426177001", "55827005"])
    write_cinc_mat(rec, "JS00002", known_signal(2), dx=["426783006"])
    table, tasks, rejects = get_adapter("csn").load_table(tmp_path)
    assert tasks == {"csn": ["SB", "SR", "55827005"]}
    assert table.iloc[0]["labels_csn"] == ["SB", "55827005"] and rejects == []


def test_code15_rows_padding_and_labels(tmp_path):
    root, signals = write_code15(tmp_path, (3, 2))
    import pandas as pd
    exams = pd.read_csv(root / "exams.csv")
    extra = exams.iloc[[0]].assign(exam_id=999, trace_file="exams_part7.hdf5")
    pd.concat([exams, extra]).to_csv(root / "exams.csv", index=False)
    table, tasks, rejects = get_adapter("code15").load_table(root)
    assert tasks == {"code15": ["1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"]}
    assert len(table) == 5 and not table["path"].str.endswith("#3").any()  # padding row 3 of part 0
    assert rejects == [("999", f"trace file {root / 'exams_part7.hdf5'} not found")]
    row = table.set_index("record_id").loc["104"]
    assert row["path"] == f"{root / 'exams_part1.hdf5'}#1"
    assert row["labels_code15"] == ["1dAVb"]
    assert table.set_index("record_id").loc["102"]["labels_code15"] == ["1dAVb", "LBBB"]
    assert table.set_index("record_id").loc["101"]["labels_code15"] == []
    assert table.groupby("subject_id")["split"].nunique().max() == 1
    np.testing.assert_allclose(melp.read_record(row["path"]).signal, signals[104], atol=1e-6)


def test_ludb_report_and_labels(tmp_path):
    root = write_ludb(tmp_path, 3)
    (root / "data" / "3.hea").unlink()
    table, tasks, rejects = get_adapter("ludb").load_table(root)
    assert list(table["record_id"]) == ["1", "2"]
    assert table.iloc[0]["report"] == ("Rhythm: Sinus rhythm. Electric axis of the heart: normal. "
                                       "Left ventricular hypertrophy.")
    assert table.iloc[0]["labels_ludb"] == ["Sinus rhythm", "Electric axis of the heart: normal",
                                            "Left ventricular hypertrophy", "Left atrial hypertrophy"]
    assert table.iloc[1]["labels_ludb"] == ["Sinus rhythm", "Electric axis of the heart: normal"]
    assert set(tasks["ludb"]) == {lab for labs in table["labels_ludb"] for lab in labs}
    assert rejects[0][0] == "3" and "3.hea is missing" in rejects[0][1]


def test_cinc_recursive_all_codes(tmp_path):
    write_cinc_mat(tmp_path / "A" / "sub", "E00001", known_signal(1), dx=["426783006"])
    write_cinc_mat(tmp_path / "B", "E00001", known_signal(2), dx=["164889003", "59118001"])
    write_cinc_mat(tmp_path / "B", "E00002", known_signal(3), dx=[])
    table, tasks, rejects = get_adapter("cinc").load_table(tmp_path)
    assert list(table["record_id"]) == ["A/sub/E00001", "B/E00001", "B/E00002"]
    assert tasks == {"cinc": ["164889003", "426783006", "59118001"]}
    assert table.iloc[2]["labels_cinc"] == []


def test_missing_layout_files_are_named(tmp_path):
    for name, missing in [("mimic-iv-ecg", "record_list.csv"), ("ptbxl", "ptbxl_database.csv"),
                          ("csn", "ConditionNames_SNOMED-CT.csv"), ("code15", "exams.csv"), ("ludb", "ludb.csv")]:
        with pytest.raises(FileNotFoundError, match=missing):
            get_adapter(name).load_table(tmp_path)


# ----------------------------------------------------------------------------- real records
def test_ludb_labels_are_spelt_as_in_the_headers():
    from melp.data.adapters.ludb import header_spellings

    spelling = header_spellings([["Rhythm: Sinus rhythm", "III degree AV-block"], ["III degree AV-block"]])
    assert spelling == {"sinus rhythm": "Sinus rhythm", "iii degree av-block": "III degree AV-block"}


def test_real_ludb(real_data):
    table, tasks, rejects = get_adapter("ludb").load_table(real_data / "ludb")
    assert len(table) == 200 and rejects == []
    first = table.set_index("record_id").loc["1"]
    assert first["report"].startswith("Rhythm: Sinus bradycardia. Electric axis of the heart: left axis deviation.")
    assert "Left ventricular hypertrophy" in first["labels_ludb"]
    counts = table["labels_ludb"].explode().value_counts()
    assert counts["Sinus rhythm"] == 143 and counts["Atrial fibrillation"] == 15  # the README's table
    assert counts["III degree AV-block"] == 5 and "STEMI: septal" in tasks["ludb"]  # the headers' spelling
    assert not any(name.startswith(("Iii", "Stemi")) for name in tasks["ludb"])
    assert set(table["split"]) == {"train", "val", "test"}


def test_real_cinc_smoke(real_data):
    table, tasks, rejects = get_adapter("cinc").load_table(real_data / "cinc-smoke")
    assert len(table) == 79  # 70 WFDB headers + the 9 SPH .h5 files that metadata.csv lists
    assert rejects == [("SPH/SPH00005", f"{real_data / 'cinc-smoke/SPH/SPH00005.h5'} has no row in "
                                        f"{real_data / 'cinc-smoke/SPH/metadata.csv'} (no labels)")]
    row = table.set_index("record_id").loc["CPSC_CPSC-Extra/A0001"]
    assert row["labels_cinc"] == ["59118001"]
    sph = table[table["path"].str.endswith(".h5")]
    assert len(sph) == 9 and sph.iloc[0]["labels_cinc"] == ["426177001", "427393009"]
    assert sph.iloc[0]["subject_id"] == "S00001"


@pytest.mark.parametrize("fmt", ["mimic-iv-ecg", "ptbxl", "cinc"])
def test_simulator_exports_read_through_adapters(tmp_path, fmt):
    """The simulator writes the three layouts the demo reads: each must load with no rejects."""
    synth = pytest.importorskip("melp.synth")
    root = synth.export(fmt, tmp_path / fmt, 12, seed=3)
    table, tasks, rejects = get_adapter(fmt).load_table(root)
    assert len(table) == 12 and rejects == []
    assert all(Path(p + ".hea").is_file() for p in table["path"])
    if fmt == "mimic-iv-ecg":
        assert table["report"].str.split().str.len().min() >= 4
    else:
        for task, classes in tasks.items():
            assert classes, f"task {task} has no classes"
        assert table[[f"labels_{t}" for t in tasks]].map(len).to_numpy().sum() > 0
    r = melp.read_record(table.iloc[0]["path"])
    assert r.signal.shape[0] == 12 and np.isfinite(r.signal).all()
