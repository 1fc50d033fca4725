"""A folder of hospital ECG files (any format ``melp.read_record`` recognises) as an ECG-report corpus.

Every file below DIR is read (recursively; hidden files, and a WFDB record's signal and annotation
files next to its header, are skipped); the report is the machine's own statements (``meta["statements"]``:
GE MUSE, Philips, HL7 aECG, DICOM), joined and cleaned by the MIMIC-IV-ECG rules
(melp.data.reports). As in the MIMIC-IV-ECG adapter, the corpus is for ECG-report pretraining, so
a file without statements is rejected ("no machine statements"), and so is a report shorter than
``MIN_WORDS`` words; files that cannot be read are rejected with the reader's reason. Record id:
the file name without extension (the path relative to DIR where two files share a name).
Split 98/1/1 by patient (the file's patient id where it gives one, else the record), like
MIMIC-IV-ECG. ``with_format(fmt)`` restricts the corpus to one format (``--format``).

Each file is read here once to find its statements and again when the cache is built: the
price of learning the report, which lives inside the signal file.
"""
from __future__ import annotations

import types
from collections import Counter
from functools import partial
from pathlib import Path

from melp.data.adapters.common import finish_table, hash_split
from melp.data.reports import clean_report, short_report_reason

name = "folder"
SPLIT_IS_OURS = True
REQUIRE_LABEL: dict[str, bool] = {}
FRACTIONS = (0.98, 0.01, 0.01)
FORMATS = ("auto", "muse", "philips", "aecg", "dicom", "edf", "csv", "wfdb")


def candidate_files(root: Path) -> list[Path]:
    files = []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        if path.suffix.lower() != ".hea" and path.with_suffix(".hea").exists():
            continue  # a WFDB record's .dat/.mat/.atr...: the record is read through its header
        files.append(path)
    return files


def _record_ids(root: Path, files: list[Path]) -> list[str]:
    stems = Counter(f.stem for f in files)
    return [f.stem if stems[f.stem] == 1 else str(f.relative_to(root).with_suffix("")) for f in files]


def load_table(root, fmt: str = "auto"):
    from melp.data.formats import detect
    from melp.data.readers import read_record

    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    root = Path(root).resolve()
    files = candidate_files(root)
    if not files:
        raise FileNotFoundError(f"{root}: no files in the folder")
    rows, rejects = [], []
    for path, record_id in zip(files, _record_ids(root, files)):
        try:
            found = detect(path) or "wfdb"
            if fmt != "auto" and found != fmt:
                rejects.append((record_id, f"{path}: format {found}, not the --format {fmt} asked for"))
                continue
            record = read_record(path)
        except Exception as err:  # an unreadable file is a reject with its reason, as in build_cache
            rejects.append((record_id, f"{type(err).__name__}: {err}"))
            continue
        statements = record.meta.get("statements") or []
        if not statements:
            rejects.append((record_id, "no machine statements"))
            continue
        report = clean_report(statements)
        if reason := short_report_reason(report):
            rejects.append((record_id, reason))
            continue
        rows.append({"record_id": record_id, "subject_id": str(record.meta.get("patient_id") or record_id),
                     "path": str(path), "report": report})
    for row, split in zip(rows, hash_split([r["subject_id"] for r in rows], FRACTIONS)):
        row["split"] = split
    return finish_table(rows, {}, str(root)), {}, rejects


def with_format(fmt: str) -> types.SimpleNamespace:
    """This adapter restricted to files of one format (``melp prepare folder --format muse``)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of: {', '.join(FORMATS)}")
    return types.SimpleNamespace(name=name, SPLIT_IS_OURS=SPLIT_IS_OURS, REQUIRE_LABEL=REQUIRE_LABEL,
                                 load_table=partial(load_table, fmt=fmt))
