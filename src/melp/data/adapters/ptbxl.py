"""PTB-XL 1.0.3: four label tasks (super, sub, form, rhythm) plus the report text.

Class lists are derived from the scp_statements.csv at hand, as the PTB-XL benchmark defines
them: super = diagnostic_class of diagnostic codes, sub = their diagnostic_subclass, form =
codes with form == 1, rhythm = codes with rhythm == 1. Every code in scp_codes counts,
whatever its likelihood (as in the benchmark). Folds 1-8 train, 9 val, 10 test. Records are
read at 500 Hz (filename_hr).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd

from melp.data.adapters.common import finish_table, require_file

name = "ptbxl"
SPLIT_IS_OURS = False  # strat_fold is the official split
TASKS = ("super", "sub", "form", "rhythm")
REQUIRE_LABEL = {task: True for task in TASKS}  # the benchmark keeps records with >= 1 label


def _flag(value) -> bool:
    try:
        return float(value) == 1.0
    except (TypeError, ValueError):
        return False


def code_maps(statements: pd.DataFrame) -> tuple[dict[str, dict[str, list[str]]], dict[str, list[str]]]:
    """For each task, SCP code -> class names, and the task's class list."""
    maps: dict[str, dict[str, list[str]]] = {t: {} for t in TASKS}
    for code, row in statements.iterrows():
        code = str(code).strip()
        if _flag(row.get("diagnostic")):
            if isinstance(row.get("diagnostic_class"), str):
                maps["super"][code] = [row["diagnostic_class"].strip()]
            if isinstance(row.get("diagnostic_subclass"), str):
                maps["sub"][code] = [row["diagnostic_subclass"].strip()]
        if _flag(row.get("form")):
            maps["form"][code] = [code]
        if _flag(row.get("rhythm")):
            maps["rhythm"][code] = [code]
    tasks = {t: sorted({c for classes in maps[t].values() for c in classes}) for t in TASKS}
    return maps, tasks


def parse_scp_codes(text: str, where: str) -> dict:
    try:
        codes = ast.literal_eval(text)
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"{where}: scp_codes is not a dict literal: {text!r}") from e
    if not isinstance(codes, dict):
        raise ValueError(f"{where}: scp_codes is not a dict: {text!r}")
    return codes


def load_table(root):
    root = Path(root).resolve()
    db_path = require_file(root / "ptbxl_database.csv", "PTB-XL database table")
    db = pd.read_csv(db_path)
    statements = pd.read_csv(require_file(root / "scp_statements.csv", "PTB-XL SCP statements"), index_col=0)
    missing = [c for c in ("ecg_id", "patient_id", "scp_codes", "strat_fold", "filename_hr") if c not in db.columns]
    if missing:
        raise ValueError(f"{db_path}: missing columns {missing}")
    maps, tasks = code_maps(statements)

    rows, rejects = [], []
    for rec in db.itertuples(index=False):
        record_id = str(int(rec.ecg_id))
        try:
            codes = parse_scp_codes(rec.scp_codes, f"{db_path} ecg_id {record_id}")
        except ValueError as e:
            rejects.append((record_id, str(e)))
            continue
        fold = rec.strat_fold
        if not (pd.notna(fold) and float(fold).is_integer() and 1 <= fold <= 10):
            rejects.append((record_id, f"{db_path}: strat_fold {fold!r} is not one of 1-10"))
            continue
        split = "train" if fold <= 8 else "val" if fold == 9 else "test"
        if not isinstance(rec.filename_hr, str) or not rec.filename_hr.strip():
            rejects.append((record_id, f"{db_path}: no filename_hr"))
            continue
        report = rec.report if isinstance(getattr(rec, "report", None), str) else ""
        subject = rec.patient_id
        row = {
            "record_id": record_id,
            "subject_id": str(int(subject)) if pd.notna(subject) else record_id,
            "path": str(root / rec.filename_hr),
            "report": " ".join(report.split()),
            "split": split,
        }
        for task in TASKS:
            labels = [c for code in codes for c in maps[task].get(str(code).strip(), [])]
            row[f"labels_{task}"] = sorted(set(labels))
        rows.append(row)
    return finish_table(rows, tasks, str(root)), tasks, rejects
