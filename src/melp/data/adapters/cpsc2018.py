"""CPSC2018: 9 rhythm/conduction/ST classes.

Two layouts are accepted: the PhysioNet/CinC 2020 copy (``g1..g7/A0001.{hea,mat}``, labels
from the ``#Dx`` SNOMED codes, with the equivalent codes of DESIGN 2.2 folded together) and the
original release (``REFERENCE.csv`` with labels 1-9 and MATLAB-struct ``.mat`` files).
No patient ids are published, so each record is its own subject for the 70/10/20 split.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from melp.data.adapters.common import dx_codes, finish_table, hash_split, header_comments

name = "cpsc2018"
SPLIT_IS_OURS = True
REQUIRE_LABEL = {"cpsc2018": True}

CLASSES = ["NORM", "AFIB", "1AVB", "CLBBB", "CRBBB", "PAC", "VPC", "STD", "STE"]
SNOMED = {
    "426783006": "NORM",
    "164889003": "AFIB",
    "270492004": "1AVB",
    "164909002": "CLBBB",
    "59118001": "CRBBB",
    "713427006": "CRBBB",
    "284470004": "PAC",
    "63593006": "PAC",
    "164884008": "VPC",
    "427172004": "VPC",
    "17338001": "VPC",
    "429622005": "STD",
    "164931005": "STE",
}
# REFERENCE.csv of the original release: 1 Normal, 2 AF, 3 I-AVB, 4 LBBB, 5 RBBB, 6 PAC, 7 PVC, 8 STD, 9 STE
ORIGINAL = {str(i + 1): c for i, c in enumerate(CLASSES)}


def _from_headers(root: Path):
    rows, rejects = [], []
    for hea in sorted(root.rglob("*.hea")):
        record_id = hea.stem
        try:
            codes = dx_codes(header_comments(hea))
        except ValueError as e:
            rejects.append((record_id, str(e)))
            continue
        labels = sorted({SNOMED[c] for c in codes if c in SNOMED}, key=CLASSES.index)
        rows.append({"record_id": record_id, "path": str(hea.with_suffix("")), "labels_cpsc2018": labels})
    return rows, rejects


def _from_reference(root: Path, reference: Path):
    table = pd.read_csv(reference, dtype=str)
    if "Recording" not in table.columns:
        raise ValueError(f"{reference}: no 'Recording' column")
    mats = {p.stem: p for p in root.rglob("*.mat")}
    label_cols = [c for c in table.columns if c != "Recording"]
    rows, rejects = [], []
    for rec in table.itertuples(index=False):
        record_id = str(rec.Recording).strip()
        if record_id not in mats:
            rejects.append((record_id, f"listed in {reference.name} but no {record_id}.mat under {root}"))
            continue
        values = [str(getattr(rec, c)).strip().split(".")[0] for c in label_cols]
        unknown = [v for v in values if v not in ORIGINAL and v not in ("", "nan")]
        if unknown:
            rejects.append((record_id, f"{reference.name}: unknown label(s) {unknown}"))
            continue
        labels = sorted({ORIGINAL[v] for v in values if v in ORIGINAL}, key=CLASSES.index)
        rows.append({"record_id": record_id, "path": str(mats[record_id]), "labels_cpsc2018": labels})
    return rows, rejects


def load_table(root):
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    references = sorted(root.rglob("REFERENCE.csv"))
    if references and not any(root.rglob("*.hea")):
        rows, rejects = [], []
        for reference in references:
            r, j = _from_reference(reference.parent, reference)
            rows += r
            rejects += j
    else:
        rows, rejects = _from_headers(root)
    if not rows and not rejects:
        raise FileNotFoundError(f"{root}: no CPSC2018 records (.hea files or REFERENCE.csv) found")
    for row, split in zip(rows, hash_split([r["record_id"] for r in rows])):
        row.update(subject_id=row["record_id"], report="", split=split)
    tasks = {"cpsc2018": list(CLASSES)}
    return finish_table(rows, tasks, str(root)), tasks, rejects
