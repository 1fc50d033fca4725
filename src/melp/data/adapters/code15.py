"""CODE-15%: 6 classes (1dAVb, RBBB, LBBB, SB, ST, AF) from exams.csv, tracings in HDF5 parts.

Each ``exams_partK.hdf5`` holds ``tracings`` (N, 4096, 12) and ``exam_id`` (N,); the padding
rows (exam_id 0) are skipped. A record's path is ``/abs/exams_partK.hdf5#row`` (row counted
from 0), which ``melp.read_record`` understands. Split 70/10/20 by patient_id hash.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from melp.data.adapters.common import finish_table, hash_split, require_file

name = "code15"
SPLIT_IS_OURS = True
REQUIRE_LABEL = {"code15": False}  # an exam with none of the 6 findings is a true negative
CLASSES = ["1dAVb", "RBBB", "LBBB", "SB", "ST", "AF"]


def _truthy(value) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "1.0")
    return bool(value) and value == value


def exam_rows(hdf5: Path) -> dict[int, int]:
    """exam_id -> row of one HDF5 part, padding rows (exam_id 0) left out."""
    with h5py.File(hdf5, "r") as f:
        if "exam_id" not in f or "tracings" not in f:
            raise ValueError(f"{hdf5}: expected datasets 'exam_id' and 'tracings', found {list(f)}")
        ids = np.asarray(f["exam_id"][:]).astype(np.int64)
    return {int(e): row for row, e in enumerate(ids) if e != 0}


def load_table(root):
    root = Path(root).resolve()
    exams_csv = require_file(root / "exams.csv", "CODE-15 exam table")
    exams = pd.read_csv(exams_csv)
    missing = [c for c in ["exam_id", "patient_id", "trace_file", *CLASSES] if c not in exams.columns]
    if missing:
        raise ValueError(f"{exams_csv}: missing columns {missing}")
    parts: dict[str, dict[int, int] | str] = {}
    rows, rejects = [], []
    for rec in exams.to_dict("records"):  # dicts: '1dAVb' is not an attribute name
        exam_id = int(rec["exam_id"])
        record_id = str(exam_id)
        trace = str(rec["trace_file"])
        if trace not in parts:
            hdf5 = root / trace
            try:
                parts[trace] = exam_rows(hdf5) if hdf5.is_file() else f"trace file {hdf5} not found"
            except (OSError, ValueError) as e:
                parts[trace] = f"cannot read {hdf5}: {e}"
        lookup = parts[trace]
        if isinstance(lookup, str):
            rejects.append((record_id, lookup))
            continue
        if exam_id not in lookup:
            rejects.append((record_id, f"exam_id not found in {trace}"))
            continue
        labels = [c for c in CLASSES if _truthy(rec[c])]
        rows.append(
            {
                "record_id": record_id,
                "subject_id": str(int(rec["patient_id"])) if pd.notna(rec["patient_id"]) else record_id,
                "path": f"{root / trace}#{lookup[exam_id]}",
                "report": "",
                "labels_code15": labels,
            }
        )
    for row, split in zip(rows, hash_split([r["subject_id"] for r in rows])):
        row["split"] = split
    tasks = {"code15": list(CLASSES)}
    return finish_table(rows, tasks, str(root)), tasks, rejects
