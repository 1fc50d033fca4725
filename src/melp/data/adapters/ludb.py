"""LUDB 1.0.1 (Lobachevsky University Database): 200 records, 12 leads, 10 s at 500 Hz.

DIR holds ``ludb.csv`` and ``data/``. The report is the cardiologists' diagnosis text from the
header comments (the lines after ``#<diagnoses>:``); labels come from the structured columns of
ludb.csv (Rhythms, Electric axis of the heart, Conduction abnormalities, ...), one class per
line of a cell. One record per subject: split 70/10/20 by record hash.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from melp.data.adapters.common import finish_table, hash_split, header_comments, require_file

name = "ludb"
SPLIT_IS_OURS = True
REQUIRE_LABEL = {"ludb": False}
NON_LABEL_COLUMNS = ("ID", "Sex", "Age")


def diagnosis_text(comments: list[str]) -> str:
    """The comment lines after '<diagnoses>:' joined into sentences."""
    lines, inside = [], False
    for line in comments:
        if line.lower().startswith("<diagnoses>"):
            inside = True
            continue
        if inside and line:
            lines.append(line.rstrip(" .") + ".")
    return " ".join(lines)


def cell_labels(value) -> list[str]:
    if not isinstance(value, str):
        return []
    return [v.strip() for v in value.splitlines() if v.strip()]


def load_table(root):
    root = Path(root).resolve()
    csv_path = require_file(root / "ludb.csv", "LUDB diagnosis table")
    data = root / "data"
    if not data.is_dir():
        raise FileNotFoundError(f"{data}: missing (LUDB record folder)")
    table = pd.read_csv(csv_path)
    if "ID" not in table.columns:
        raise ValueError(f"{csv_path}: no 'ID' column")
    label_cols = [c for c in table.columns if c not in NON_LABEL_COLUMNS]
    headers = {h.stem: h for h in data.glob("*.hea")}

    rows, rejects = [], []
    for rec in table.to_dict("records"):
        record_id = str(int(rec["ID"]))
        hea = headers.pop(record_id, None)
        if hea is None:
            rejects.append((record_id, f"listed in ludb.csv but {data / record_id}.hea is missing"))
            continue
        labels = list(dict.fromkeys(lab for col in label_cols for lab in cell_labels(rec[col])))
        rows.append(
            {
                "record_id": record_id,
                "subject_id": record_id,
                "path": str(hea.with_suffix("")),
                "report": diagnosis_text(header_comments(hea)),
                "labels_ludb": labels,
            }
        )
    for record_id in sorted(headers):
        rejects.append((record_id, f"{headers[record_id]} has no row in ludb.csv (no labels)"))
    for row, split in zip(rows, hash_split([r["subject_id"] for r in rows])):
        row["split"] = split
    tasks = {"ludb": sorted({lab for r in rows for lab in r["labels_ludb"]})}
    return finish_table(rows, tasks, str(root)), tasks, rejects
