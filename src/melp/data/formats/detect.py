"""Recognise a file's format from its first bytes, not its name.

Hospital systems export files with arbitrary or missing extensions (``.txt``, ``.dat``, none), so
the format is taken from the content: ``DICM`` at byte 128 (DICOM; a DICOM data set written without
that preamble by its first element tag), the fixed EDF header, the
SCP-ECG section-0 marker, the root element of an XML file, or a text table whose header row names
leads. Only WFDB, CPSC ``.mat`` and SPH/CODE-15 HDF5 are still recognised by their names, by
``read_record`` itself, when nothing here matches.
"""
from __future__ import annotations

import codecs
import re
from pathlib import Path

from melp.data.readers import RecordError

SNIFF_BYTES = 2048
# Files that read_record's older, name-based dispatch handles (WFDB, CPSC .mat, SPH/CODE-15 HDF5).
LEGACY_SUFFIXES = (".hea", ".dat", ".mat", ".h5", ".hdf5")
TABLE_SUFFIXES = (".csv", ".tsv")
XML_ROOTS = {"restingecg": "muse", "restingecgdata": "philips", "annotatedecg": "aecg"}

_XML_PROLOGUE = re.compile(r"^(?:\s+|<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>\[]*(?:\[.*?\])?\s*>)*", re.DOTALL)
_XML_ROOT = re.compile(r"<([A-Za-z_][\w.\-]*:)?([A-Za-z_][\w.\-]*)")


def _decode(head: bytes) -> str | None:
    """Text of the first bytes when they look like text (BOMs honoured), else None."""
    for bom, encoding in ((codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF16_LE, "utf-16-le"),
                          (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[len(bom):].decode(encoding, errors="ignore")
    if b"\x00" in head:
        return None
    try:
        return head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 4:  # not merely a character cut at the end of the window
            try:
                return head.decode("latin-1") if _mostly_printable(head) else None
            except UnicodeDecodeError:
                return None
        return head[:err.start].decode("utf-8")


def _mostly_printable(head: bytes) -> bool:
    printable = sum(32 <= b < 127 or b in (9, 10, 13) for b in head)
    return printable >= 0.95 * len(head)


def _is_edf(head: bytes) -> bool:
    """EDF/EDF+/BDF fixed header: version '0' (BDF: 0xFF 'BIOSEMI'), then numeric fields."""
    if len(head) < 256 or not (head[:8] == b"0       " or head[:8] == b"\xffBIOSEMI"):
        return False
    try:
        header_bytes = int(head[184:192].decode("ascii").strip())
        n_signals = int(head[252:256].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        return False
    return n_signals > 0 and header_bytes == 256 * (n_signals + 1)


# value representations a DICOM element may carry (PS3.5 6.2): an explicit-VR data set's first element
_DICOM_VRS = {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"OB", b"OD",
              b"OF", b"OL", b"OV", b"OW", b"PN", b"SH", b"SL", b"SQ", b"SS", b"ST", b"SV", b"TM", b"UC",
              b"UI", b"UL", b"UN", b"UR", b"US", b"UT", b"UV"}


def _is_raw_dicom(head: bytes) -> bool:
    """A DICOM data set without the 128-byte preamble and ``DICM`` (as some archives and PACS exports
    write it): it starts with a little-endian tag of group 0002 (file meta) or 0008 (identification),
    then an explicit VR, or an implicit-VR value length that fits in the first bytes."""
    if len(head) < 8 or head[:2] not in (b"\x02\x00", b"\x08\x00"):
        return False
    if head[4:6] in _DICOM_VRS:
        return True
    length = int.from_bytes(head[4:8], "little")
    return 0 < length <= 256 and length % 2 == 0


def _xml_root(text: str) -> str | None:
    """The root element's local name of an XML document's first characters, or None."""
    body = text[_XML_PROLOGUE.match(text).end():]
    if not body.startswith("<"):
        return None
    match = _XML_ROOT.match(body)
    return match.group(2) if match else None


def _looks_like_lead_table(text: str) -> bool:
    from melp.data.formats.common import lead_label
    from melp.data.leads import canonical_lead_name

    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = [f.strip().strip('"') for f in re.split(r"[,;\t]", line)]
        return len(fields) >= 2 and any(canonical_lead_name(lead_label(f)) for f in fields)
    return False


def detect(path) -> str | None:
    """'dicom', 'edf', 'muse', 'philips', 'aecg', 'csv', or None for the name-based layouts.

    Raises RecordError for an empty file, an SCP-ECG file (no maintained reader), XML with another
    root, and content no reader recognises. ``path`` must be an existing file.
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(SNIFF_BYTES)
    suffix = path.suffix.lower()
    if not head:
        if suffix in LEGACY_SUFFIXES:
            return None  # the WFDB/.mat/HDF5 readers say which part of the record is empty
        raise RecordError(path, "empty file (0 bytes)")
    if head[128:132] == b"DICM":
        return "dicom"
    if _is_edf(head):
        return "edf"
    if head[16:22] == b"SCPECG" or suffix == ".scp":
        raise RecordError(path, "SCP-ECG is not supported: no maintained Python reader exists "
                                "(see docs/formats.md); convert it to another format first")
    if suffix in LEGACY_SUFFIXES:
        return None
    if _is_raw_dicom(head):
        return "dicom"
    text = _decode(head)
    if text is not None:
        stripped = text.lstrip()
        if stripped.startswith("<"):
            root = _xml_root(stripped)
            if root is None:
                raise RecordError(path, "XML without a readable root element")
            fmt = XML_ROOTS.get(root.lower())
            if fmt is None:
                raise RecordError(path, f"XML with root element <{root}>: not an ECG format melp reads "
                                        "(GE MUSE <RestingECG>, Philips <restingecgdata>, HL7 <AnnotatedECG>)")
            return fmt
        if suffix in TABLE_SUFFIXES or _looks_like_lead_table(text):
            return "csv"
    if path.with_suffix(".hea").exists() or Path(f"{path}.hea").exists():
        return None  # a WFDB signal file with an unusual extension
    # the first bytes shown with non-printables as '.', so the message holds no escapes
    start = "".join(chr(b) if 32 <= b < 127 else "." for b in head[:16])
    what = "text" if text is not None else "binary data"
    raise RecordError(path, "unrecognised file format: not DICOM, EDF, XML (MUSE, Philips, aECG), a CSV with "
                            f"lead columns, or a WFDB record ({what} starting '{start}')")
