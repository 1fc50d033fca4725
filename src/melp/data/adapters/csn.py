"""CSN / Chapman-Shaoxing-Ningbo (PhysioNet ecg-arrhythmia 1.0.0).

``WFDBRecords/NN/NNN/JSxxxxx.{hea,mat}`` with ``#Dx`` SNOMED codes; class names are the
acronyms of ``ConditionNames_SNOMED-CT.csv``. Codes missing from that table are kept as
classes named by the code itself (never dropped). The class list holds the classes seen in the
data, in the table's order, then the unknown codes sorted. No patient ids: record = subject.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from melp.data.adapters.common import dx_codes, finish_table, hash_split, header_comments, require_file

name = "csn"
SPLIT_IS_OURS = True
REQUIRE_LABEL = {"csn": True}


def condition_names(path: Path) -> dict[str, str]:
    """SNOMED code -> acronym from ConditionNames_SNOMED-CT.csv."""
    table = pd.read_csv(path, dtype=str)
    cols = {c.strip().lower(): c for c in table.columns}
    code_col = cols.get("snomed_ct")
    name_col = cols.get("acronym name")
    if code_col is None or name_col is None:
        raise ValueError(f"{path}: expected columns 'Acronym Name' and 'Snomed_CT', got {list(table.columns)}")
    return {str(c).strip(): str(n).strip() for c, n in zip(table[code_col], table[name_col]) if pd.notna(c)}


def load_table(root):
    root = Path(root).resolve()
    names_csv = require_file(root / "ConditionNames_SNOMED-CT.csv", "CSN condition names")
    names = condition_names(names_csv)
    records_dir = root / "WFDBRecords"
    if not records_dir.is_dir():
        raise FileNotFoundError(f"{records_dir}: missing (CSN record folder)")
    rows, rejects, seen = [], [], set()
    for hea in sorted(records_dir.rglob("*.hea")):
        try:
            codes = dx_codes(header_comments(hea))
        except ValueError as e:
            rejects.append((hea.stem, str(e)))
            continue
        labels = list(dict.fromkeys(names.get(c, c) for c in codes))
        seen.update(labels)
        rows.append({"record_id": hea.stem, "path": str(hea.with_suffix("")), "labels_csn": labels})
    if not rows and not rejects:
        raise FileNotFoundError(f"{records_dir}: no .hea files")
    known = list(dict.fromkeys(n for n in names.values() if n in seen))
    classes = known + sorted(seen - set(known))
    for row, split in zip(rows, hash_split([r["record_id"] for r in rows])):
        row.update(subject_id=row["record_id"], report="", split=split)
    tasks = {"csn": classes}
    return finish_table(rows, tasks, str(root)), tasks, rejects
