"""Helpers shared by the dataset adapters: deterministic splits, header comments, table checks."""
from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd

SPLITS = ("train", "val", "test")
# Downstream datasets without an official split: 70/10/20 as in the MERL/MELP benchmarks.
DOWNSTREAM_FRACTIONS = (0.7, 0.1, 0.2)

BASE_COLUMNS = ["record_id", "subject_id", "path", "report", "split"]


def hash_split(subject_ids, fractions=DOWNSTREAM_FRACTIONS, salt: str = "melp") -> list[str]:
    """train/val/test per subject from a hash of its id: deterministic, patient-disjoint, and
    stable when records are added (a subject never moves)."""
    if abs(sum(fractions) - 1.0) > 1e-9:
        raise ValueError(f"split fractions must sum to 1, got {fractions}")
    edges = [fractions[0], fractions[0] + fractions[1]]
    out = []
    for sid in subject_ids:
        digest = hashlib.sha1(f"{salt}:{sid}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        out.append("train" if u < edges[0] else "val" if u < edges[1] else "test")
    return out


def header_comments(hea: Path) -> list[str]:
    """Comment lines of a WFDB header, without the leading '#', stripped.

    Read as plain text (not through wfdb) so a damaged record line does not hide the labels;
    the signal itself is checked later, when the record is read.
    """
    try:
        text = Path(hea).read_text(errors="replace")
    except OSError as e:
        raise ValueError(f"{hea}: cannot read header: {e}") from e
    return [ln.strip()[1:].strip() for ln in text.splitlines() if ln.strip().startswith("#")]


def comment_value(comments: list[str], key: str) -> str | None:
    """Value of a '#Key: value' comment (case-insensitive key), or None."""
    key = key.lower()
    for line in comments:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == key:
            return value.strip()
    return None


def dx_codes(comments: list[str]) -> list[str]:
    """The '#Dx' SNOMED codes of a CinC header, in order, without duplicates."""
    value = comment_value(comments, "Dx")
    if not value:
        return []
    codes = [c.strip() for c in value.replace(";", ",").split(",")]
    return list(dict.fromkeys(c for c in codes if c))


def finish_table(rows: list[dict], tasks: dict[str, list[str]], source: str) -> pd.DataFrame:
    """Build the adapter table with the contract's columns and check it."""
    columns = BASE_COLUMNS + [f"labels_{t}" for t in tasks]
    table = pd.DataFrame(rows, columns=columns)
    for col in ("record_id", "subject_id", "path", "report", "split"):
        table[col] = table[col].astype(str)
    dup = table["record_id"][table["record_id"].duplicated()]
    if len(dup):
        raise ValueError(f"{source}: duplicate record ids, e.g. {dup.iloc[0]!r}")
    bad = set(table["split"]) - set(SPLITS)
    if bad:
        raise ValueError(f"{source}: unknown split names {sorted(bad)}")
    for task, classes in tasks.items():
        known = set(classes)
        for labels in table[f"labels_{task}"]:
            unknown = set(labels) - known
            if unknown:
                raise ValueError(f"{source}: labels {sorted(unknown)} are not classes of task {task!r}")
    return table.reset_index(drop=True)


def require_file(path: Path, what: str) -> Path:
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: missing ({what})")
    return Path(path)
