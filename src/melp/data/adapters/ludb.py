"""LUDB 1.0.1 (Lobachevsky University Database): 200 records, 12 leads, 10 s at 500 Hz.

DIR holds ``ludb.csv`` and ``data/``. The report is the cardiologists' diagnosis text from the
header comments (the lines after ``#<diagnoses>:``); labels come from the structured columns of
ludb.csv (Rhythms, Electric axis of the heart, Conduction abnormalities, ...), one class per
line of a cell, spelt as in the headers: ludb.csv lower-cases all but the first letter
("Iii degree av-block" for the headers' "III degree AV-block"). One record per subject: split
70/10/20 by record hash.
"""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd

from melp.data.adapters.common import finish_table, hash_split, header_comments, require_file

name = "ludb"
SPLIT_IS_OURS = True
REQUIRE_LABEL = {"ludb": False}
NON_LABEL_COLUMNS = ("ID", "Sex", "Age")


def diagnosis_lines(comments: list[str]) -> list[str]:
    """The comment lines after '<diagnoses>:', without their closing period."""
    lines, inside = [], False
    for line in comments:
        if line.lower().startswith("<diagnoses>"):
            inside = True
            continue
        if inside and line:
            lines.append(line.rstrip(" ."))
    return lines


def diagnosis_text(comments: list[str]) -> str:
    """The comment lines after '<diagnoses>:' joined into sentences."""
    return " ".join(line + "." for line in diagnosis_lines(comments))


def header_spellings(diagnoses: list[list[str]]) -> dict[str, str]:
    """Lower-cased diagnosis -> its most frequent spelling in the headers ("Rhythm: " dropped, as
    ludb.csv's Rhythms column does)."""
    counts = Counter(line.removeprefix("Rhythm: ") for lines in diagnoses for line in lines)
    spellings: dict[str, str] = {}
    for text, _ in counts.most_common():
        spellings.setdefault(text.lower(), text)
    return spellings


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

    rows, rejects, diagnoses = [], [], []
    for rec in table.to_dict("records"):
        record_id = str(int(rec["ID"]))
        hea = headers.pop(record_id, None)
        if hea is None:
            rejects.append((record_id, f"listed in ludb.csv but {data / record_id}.hea is missing"))
            continue
        comments = header_comments(hea)
        diagnoses.append(diagnosis_lines(comments))
        labels = [lab for col in label_cols for lab in cell_labels(rec[col])]
        rows.append(
            {
                "record_id": record_id,
                "subject_id": record_id,
                "path": str(hea.with_suffix("")),
                "report": diagnosis_text(comments),
                "labels_ludb": labels,
            }
        )
    spelling = header_spellings(diagnoses)
    for row in rows:
        row["labels_ludb"] = list(dict.fromkeys(spelling.get(lab.lower(), lab) for lab in row["labels_ludb"]))
    for record_id in sorted(headers):
        rejects.append((record_id, f"{headers[record_id]} has no row in ludb.csv (no labels)"))
    for row, split in zip(rows, hash_split([r["subject_id"] for r in rows])):
        row["split"] = split
    tasks = {"ludb": sorted({lab for r in rows for lab in r["labels_ludb"]})}
    return finish_table(rows, tasks, str(root)), tasks, rejects
