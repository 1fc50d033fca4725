"""Readers for the formats hospitals export, behind ``melp.read_record`` (docs/formats.md).

One module per format, each ``read_<format>(path, *, allow_missing_leads, strict) -> Record``
ending in ``readers._to_record`` (the lead-name matching and damage policy shared with WFDB).
``detect`` recognises the format from the file's content.
"""
from __future__ import annotations

import importlib

from melp.data.formats.detect import detect

# format -> (module, function)
READERS = {
    "muse": ("melp.data.formats.muse", "read_muse"),
    "philips": ("melp.data.formats.philips", "read_philips"),
    "aecg": ("melp.data.formats.aecg", "read_aecg"),
    "dicom": ("melp.data.formats.dicom", "read_dicom"),
    "edf": ("melp.data.formats.edf", "read_edf"),
    "csv": ("melp.data.formats.csvfile", "read_csv"),
}


def read_format(fmt: str, path, *, allow_missing_leads: bool = False, strict: bool = False,
                fs: float | None = None):
    """Read ``path`` as format ``fmt`` (a key of READERS); ``fs`` is used by CSV only."""
    module, function = READERS[fmt]
    reader = getattr(importlib.import_module(module), function)
    if fmt == "csv":
        return reader(path, allow_missing_leads=allow_missing_leads, strict=strict, fs=fs)
    return reader(path, allow_missing_leads=allow_missing_leads, strict=strict)


__all__ = ["READERS", "detect", "read_format"]
