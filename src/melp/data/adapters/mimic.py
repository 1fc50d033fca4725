"""MIMIC-IV-ECG v1.0: ECG-report pairs for pretraining (no label task).

record_list.csv (subject_id, study_id, path) joined on study_id with machine_measurements.csv
(report_0 ... report_17). Reports are cleaned as in DESIGN 2.1; reports under 4 words are
rejected. Split by subject hash, 98/1/1: val is the held-out pretraining data used to select
checkpoints, test is kept aside for retrieval and report generation.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from melp.data.adapters.common import finish_table, hash_split, require_file
from melp.data.reports import clean_report, short_report_reason

name = "mimic-iv-ecg"
SPLIT_IS_OURS = True
REQUIRE_LABEL: dict[str, bool] = {}
FRACTIONS = (0.98, 0.01, 0.01)


def load_table(root):
    root = Path(root).resolve()
    records = pd.read_csv(require_file(root / "record_list.csv", "MIMIC-IV-ECG record list"), dtype=str)
    measurements = pd.read_csv(
        require_file(root / "machine_measurements.csv", "MIMIC-IV-ECG machine measurements"), dtype=str
    )
    for frame, fname, cols in (
        (records, "record_list.csv", ("subject_id", "study_id", "path")),
        (measurements, "machine_measurements.csv", ("study_id",)),
    ):
        missing = [c for c in cols if c not in frame.columns]
        if missing:
            raise ValueError(f"{root / fname}: missing columns {missing}")
    report_cols = sorted(
        (c for c in measurements.columns if c.startswith("report_")), key=lambda c: int(c.split("_")[1])
    )
    if not report_cols:
        raise ValueError(f"{root / 'machine_measurements.csv'}: no report_N columns")
    reports = measurements.drop_duplicates("study_id")[["study_id", *report_cols]]
    joined = records.merge(reports, on="study_id", how="left", indicator=True)

    rows, rejects = [], []
    for rec, found, parts in zip(
        joined.itertuples(index=False), joined["_merge"] == "both", joined[report_cols].itertuples(index=False)
    ):
        record_id = str(rec.study_id)
        if not found:
            rejects.append((record_id, "no machine_measurements row for this study_id"))
            continue
        report = clean_report(parts)
        if reason := short_report_reason(report):
            rejects.append((record_id, reason))
            continue
        rows.append(
            {
                "record_id": record_id,
                "subject_id": str(rec.subject_id),
                "path": str(root / rec.path),
                "report": report,
            }
        )
    splits = hash_split([r["subject_id"] for r in rows], FRACTIONS)
    for row, split in zip(rows, splits):
        row["split"] = split
    return finish_table(rows, {}, str(root)), {}, rejects
