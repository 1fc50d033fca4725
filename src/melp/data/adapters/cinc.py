"""A generic PhysioNet/CinC Challenge folder: every ``.hea`` below DIR, labels = its ``#Dx`` codes.

SPH records of the 2021 challenge (``.h5`` files described by ``metadata.csv``) are included
too, with their SNOMED codes and patient ids. The class list is every code seen, sorted.
Record ids are paths relative to DIR (sub-folders may reuse names). Split 70/10/20 by subject
hash (the record itself when no patient id is published).
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from melp.data.adapters.common import dx_codes, finish_table, hash_split, header_comments

name = "cinc"
SPLIT_IS_OURS = True
REQUIRE_LABEL = {"cinc": False}


def _sph_rows(metadata: Path, root: Path):
    table = pd.read_csv(metadata, dtype=str)
    if "ECG_ID" not in table.columns or not table["ECG_ID"].str.endswith(".h5").any():
        return [], []  # some other metadata file
    rows, rejects = [], []
    listed = {str(v).strip() for v in table["ECG_ID"]}
    for h5 in sorted(metadata.parent.glob("*.h5")):
        if h5.name not in listed:
            rejects.append((str(h5.relative_to(root).with_suffix("")), f"{h5} has no row in {metadata} (no labels)"))
    for rec in table.to_dict("records"):
        h5 = metadata.parent / str(rec["ECG_ID"]).strip()
        record_id = str(h5.relative_to(root).with_suffix(""))
        if not h5.is_file():
            rejects.append((record_id, f"listed in {metadata} but {h5} is missing"))
            continue
        codes = [c.strip() for c in str(rec.get("SNOMEDCTCode", "")).replace(";", ",").split(",")]
        patient = rec.get("Patient_ID")
        rows.append(
            {
                "record_id": record_id,
                "subject_id": str(patient).strip() if isinstance(patient, str) and patient.strip() else record_id,
                "path": str(h5),
                "labels_cinc": list(dict.fromkeys(c for c in codes if c and c != "nan")),
            }
        )
    return rows, rejects


def load_table(root):
    root = Path(root).resolve()
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a folder")
    rows, rejects = [], []
    for hea in sorted(root.rglob("*.hea")):
        record_id = str(hea.relative_to(root).with_suffix(""))
        try:
            codes = dx_codes(header_comments(hea))
        except ValueError as e:
            rejects.append((record_id, str(e)))
            continue
        rows.append({"record_id": record_id, "subject_id": record_id, "path": str(hea.with_suffix("")),
                     "labels_cinc": codes})
    for metadata in sorted(root.rglob("metadata.csv")):
        r, j = _sph_rows(metadata, root)
        rows += r
        rejects += j
    if not rows and not rejects:
        raise FileNotFoundError(f"{root}: no CinC records (.hea files) found")
    for row, split in zip(rows, hash_split([r["subject_id"] for r in rows])):
        row.update(report="", split=split)
    tasks = {"cinc": sorted({c for r in rows for c in r["labels_cinc"]})}
    return finish_table(rows, tasks, str(root)), tasks, rejects
