"""Plain CSV (or TSV / semicolon-separated) with one column per lead, named in a header row.

The sampling rate comes from, in this order: a comment line before the header (``# fs=500``,
``# sampling_rate: 500 Hz``); the spacing of a time column (``time``/``t``/``time_s`` in seconds,
``time_ms``/``ms`` in milliseconds), which must be uniform; the ``fs`` argument
(``read_record(path, fs=500)``, ``--fs`` on ``melp classify``/``melp report``). Values are mV
unless a comment says otherwise (``# units: uV``). Columns that are neither leads nor a time or
sample-index column are rejected, like unknown channel names in any other format.
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from melp.data.formats.common import lead_label, unit_factor
from melp.data.leads import canonical_lead_name, extra_channel_name
from melp.data.readers import Record, RecordError, _empty_meta, _to_record

_RATE = re.compile(r"\b(?:fs|sampling[ _-]?(?:rate|frequency)|sample[ _-]?rate|rate)\s*[:=]\s*"
                   r"([0-9]+(?:\.[0-9]+)?)\s*(k?hz)?", re.IGNORECASE)
_UNITS = re.compile(r"\bunits?\s*[:=]\s*([^\s,;]+)", re.IGNORECASE)
TIME_SECONDS = ("time", "t", "time_s", "time(s)", "time [s]", "seconds", "sec", "s")
TIME_MILLISECONDS = ("time_ms", "time(ms)", "time [ms]", "ms", "milliseconds")
INDEX_COLUMNS = ("sample", "samples", "index", "n", "")


def _comments(lines: list[str]) -> tuple[list[str], int]:
    """The leading comment lines (without '#') and the index of the header row."""
    comments = []
    for k, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            comments.append(stripped[1:].strip())
            continue
        return comments, k
    return comments, len(lines)


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in ("\t", ";", ",")}
    best = max(counts, key=counts.get)
    return best if counts[best] else ","


def _samples(path, text: str, first_row: int, delimiter: str) -> np.ndarray:
    """The numeric rows below the header, parsed by pandas' C parser (Holter exports run to
    millions of rows); empty fields become NaN, for the shared NaN policy."""
    import io

    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text), sep=delimiter, header=None, skiprows=first_row, comment="#",
                            dtype=np.float64, skip_blank_lines=True)
    except pd.errors.EmptyDataError:
        raise RecordError(path, "CSV holds a header row but no samples") from None
    except pd.errors.ParserError as err:
        raise RecordError(path, f"CSV rows hold different numbers of fields ({err})") from None
    except ValueError as err:
        raise RecordError(path, f"CSV value that is not a number ({err})") from None
    if frame.empty:
        raise RecordError(path, "CSV holds a header row but no samples")
    return frame.to_numpy(dtype=np.float64)


def read_csv(path, *, allow_missing_leads: bool = False, strict: bool = False,
             fs: float | None = None) -> Record:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise RecordError(path, "not a UTF-8 text file, so not a CSV table") from None
    lines = text.splitlines()
    comments, start = _comments(lines)
    if start >= len(lines):
        raise RecordError(path, "CSV without a header row")
    delimiter = _delimiter(lines[start])
    columns = [c.strip().strip('"').strip() for c in lines[start].split(delimiter)]
    meta = _empty_meta()
    meta["comments"] = comments
    meta["format"] = "CSV"

    lead_columns, names, time_column, time_scale, others = [], [], None, 1.0, []
    for k, column in enumerate(columns):
        name = lead_label(column)
        low = column.lower()
        if canonical_lead_name(name) or extra_channel_name(name):
            lead_columns.append(k)
            names.append(name)
        elif low in TIME_SECONDS or low in TIME_MILLISECONDS:
            time_column, time_scale = k, (1e-3 if low in TIME_MILLISECONDS else 1.0)
        elif low not in INDEX_COLUMNS:
            others.append(column)
    if not lead_columns:
        raise RecordError(path, f"CSV without lead columns: the header row is {columns} "
                                "(expected names such as I, II, V1, or 'ECG I')")
    if others:
        raise RecordError(path, f"CSV columns {others} are neither leads nor a time/sample column")

    table = _samples(path, text, start + 1, delimiter)
    if table.shape[1] != len(columns):
        raise RecordError(path, f"CSV rows hold {table.shape[1]} fields, the header row {len(columns)}")

    rate = None
    for comment in comments:
        match = _RATE.search(comment)
        if match and rate is None:
            rate = float(match.group(1)) * (1000.0 if (match.group(2) or "").lower() == "khz" else 1.0)
        units = _UNITS.search(comment)
        if units:
            meta["units"] = units.group(1)
    if rate is None and time_column is not None and table.shape[0] > 1:
        steps = np.diff(table[:, time_column]) * time_scale
        step = float(np.median(steps))
        if step <= 0 or np.max(np.abs(steps - step)) > 0.01 * step:
            raise RecordError(path, f"time column {columns[time_column]!r} is not evenly spaced")
        rate = round(1.0 / step, 6)
    if rate is None:
        rate = fs
    elif fs is not None and abs(fs - rate) > 1e-6 * rate:
        meta["notes"].append(f"the file states {rate:g} Hz: fs={fs:g} was not used")
    if rate is None:
        raise RecordError(path, "no sampling rate: add a first line '# fs=500', a time column, or pass "
                                "fs= (--fs on the command line)")
    if rate <= 0:
        raise RecordError(path, f"sampling rate {rate} Hz is not positive")
    factor = unit_factor(path, meta.pop("units", "mV"))
    channels = table[:, lead_columns].T * factor
    return _to_record(path, channels, names, rate, meta, allow_missing_leads, strict)
