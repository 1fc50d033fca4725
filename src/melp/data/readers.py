"""Read one ECG record, whatever its format, into millivolts in the canonical lead order.

``read_record(path)`` understands
- WFDB records (``x.hea`` + ``x.dat``, or the PhysioNet/CinC ``x.hea`` + ``x.mat`` with key ``val``);
  ``path`` may name the header, the signal file or the record without extension;
- the original CPSC2018 ``.mat`` struct (``ECG.data`` 12 x T in mV at 500 Hz, ``ECG.age``, ``ECG.sex``);
- SPH ``.h5`` files (dataset ``ecg``, 12 x T float16 in mV, 500 Hz, standard lead order; age, sex
  and SNOMED codes from the ``metadata.csv`` next to them);
- CODE-15 HDF5 rows, as ``"exams_part0.hdf5#17"`` or ``read_code15(file, row)``;
- the hospital export formats of ``melp.data.formats`` (docs/formats.md): GE MUSE XML, Philips
  Sierra XML, HL7 aECG, DICOM waveforms, EDF/EDF+ and CSV, recognised from the file's content
  (``formats.detect``) before the name-based dispatch below; their machine statements go to
  ``meta["statements"]``.

Policy on damaged input (every repair is written to ``meta["notes"]``, nothing happens silently):
- a record line naming the signal file (``E07500.mat 12 500 5000``) is read as record ``E07500``;
- a signal file shorter than the header says, or of a size that fits no whole number of samples,
  is rejected (expected vs found bytes); extra trailing bytes are ignored and noted;
- a header whose signal count disagrees with its signal lines is repaired only when the signal
  data has exactly as many channels as there are lines, else rejected;
- unknown or repeated lead names are rejected; missing leads are rejected unless
  ``allow_missing_leads=True`` (then zero-filled and listed in ``meta["missing_leads"]``);
- non-finite samples (NaN/inf, and the WFDB "invalid sample" codes that wfdb turns into NaN):
  a lead with more than ``MAX_FILL_FRACTION`` of them counts as missing; fewer are filled by linear
  interpolation and counted in ``meta["filled_samples"]`` (``strict=True`` rejects instead);
- samples that disagree with the header's checksums are noted (``strict=True`` rejects them);
- gains that only stretch each lead to a range of 1 mV (LUDB 1.0.1; recognised by each gain
  equalling its lead's count range while the counts obey III = II - I) are replaced by one gain,
  ``RANGE_SCALED_COUNTS_PER_MV``, so that the leads keep their relative sizes;
- an all-constant (flat) lead is listed in ``meta["flat_leads"]`` (``strict=True`` rejects it):
  a flat lead is still a valid record for the other eleven, so the caller decides.

WFDB headers are parsed here rather than by ``wfdb.rdheader``: it refuses repairable damage and
costs about 1 ms per record, which matters for the ~800k records of MIMIC-IV-ECG. Signal formats
with a plain numpy layout (16, 61, 80, 160, 24, 32) are decoded with numpy; anything else
(212, 310, FLAC, multi-segment, several samples per frame) goes through ``wfdb.rdrecord``.
"""
from __future__ import annotations

import dataclasses
import functools
import os
import re
from pathlib import Path

import numpy as np

from melp.data.leads import CANONICAL_LEADS, LeadNameError, match_leads

# A lead with more non-finite samples than this is treated as missing rather than interpolated.
MAX_FILL_FRACTION = 0.1
CPSC2018_FS = 500.0
SPH_FS = 500.0
CODE15_FS = 400.0
WFDB_DEFAULT_FS = 250.0  # the WFDB header spec's default when the record line has no rate
WFDB_DEFAULT_GAIN = 200.0  # ... and when a signal line has no (or a zero) ADC gain
# The common gain given to counts whose header gains only scale each lead to a range of 1 mV (LUDB
# 1.0.1): 1 uV per count, as in LUDB's counts (III = II - I holds exactly in them and median lead
# ranges come out at 0.9-2.5 mV). The model's min-max normalisation does not depend on this value.
RANGE_SCALED_COUNTS_PER_MV = 1000.0

_UNIT_TO_MV = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "μv": 1e-3, "v": 1e3, "nv": 1e-6}

# numpy dtype of each simple WFDB format, the offset to subtract, and its "invalid sample" code.
_NUMPY_FORMATS = {
    "16": ("<i2", 0, -32768),
    "61": (">i2", 0, -32768),
    "80": ("u1", 128, -128),
    "160": ("<u2", 32768, -32768),
    "32": ("<i4", 0, -(2**31)),
    "24": (None, 0, -(2**23)),  # 3-byte little-endian, unpacked by hand
}
_FORMAT_BYTES = {"16": 2, "61": 2, "80": 1, "160": 2, "32": 4, "24": 3}


class RecordError(ValueError):
    """A record that cannot be read as a 12-lead ECG; the message names the file and the problem."""

    def __init__(self, path, problem: str):
        super().__init__(f"{path}: {problem}")
        self.path = str(path)
        self.problem = problem

    def __reduce__(self):  # survives pickling, e.g. out of a DataLoader or Pool worker
        return type(self), (self.path, self.problem)


@dataclasses.dataclass
class Record:
    signal: np.ndarray  # float32 (12, T), millivolts, CANONICAL_LEADS order
    fs: float  # sampling rate, Hz
    leads: list[str]  # CANONICAL_LEADS
    path: str  # the file read (a WFDB record's header; 'file.hdf5#row' for CODE-15)
    # age (float|None), sex ('M'/'F'/None), dx (codes), comments (header comment lines),
    # extra_channels (name -> float32 mV), missing_leads, flat_leads, filled_samples (lead -> count),
    # nan_leads (present but mostly NaN/inf), checksum_mismatch (leads whose samples fail the header),
    # notes (every repair or oddity, as text), statements (the machine's own reading, as sentences:
    # MUSE, Philips, aECG, DICOM); CODE-15 adds exam_id and padding, SPH extra (its CSV row), the
    # formats package format (its name) and patient_id where given, MUSE original_statements.
    meta: dict


def _empty_meta() -> dict:
    return {"age": None, "sex": None, "dx": [], "comments": [], "extra_channels": {},
            "missing_leads": [], "flat_leads": [], "filled_samples": {}, "notes": [],
            "nan_leads": [], "checksum_mismatch": [], "statements": []}


# ----------------------------------------------------------------------------- entry point

def read_record(path, *, allow_missing_leads: bool = False, strict: bool = False,
                fs: float | None = None) -> Record:
    """Read one record (any supported format) into a ``Record`` in mV, canonical lead order.

    ``fs`` is the sampling rate of a file that does not state one (a CSV without a rate comment
    or time column); files that state their rate ignore it.
    """
    text = str(path)
    file_part, _, row = text.rpartition("#")
    if file_part and row.isdigit() and Path(file_part).suffix.lower() in (".hdf5", ".h5"):
        return read_code15(file_part, int(row), allow_missing_leads=allow_missing_leads, strict=strict)
    p = Path(text)
    if p.is_dir():
        raise RecordError(p, "is a folder, not a record: give one record's file (.hea, .mat, .h5, file.hdf5#row)")
    if p.suffix.lower() != ".hea" and p.is_file():  # a WFDB header needs no sniffing (MIMIC: ~800k of them)
        from melp.data.formats import detect, read_format

        fmt = detect(p)  # from the content; None for the name-based layouts below
        if fmt is not None:
            return read_format(fmt, p, allow_missing_leads=allow_missing_leads, strict=strict, fs=fs)
    suffix = p.suffix.lower()
    if suffix == ".hdf5":
        raise RecordError(p, "a CODE-15 HDF5 file holds many records: name one as 'file.hdf5#row'")
    if suffix == ".h5":
        return read_sph(p, allow_missing_leads=allow_missing_leads, strict=strict)
    if suffix == ".mat" and not p.with_suffix(".hea").exists():
        return read_cpsc2018_mat(p, allow_missing_leads=allow_missing_leads, strict=strict)
    return read_wfdb(p, allow_missing_leads=allow_missing_leads, strict=strict)


# ----------------------------------------------------------------------------- shared final step

def _to_record(path, channels: np.ndarray, names: list[str], fs: float, meta: dict,
               allow_missing_leads: bool, strict: bool) -> Record:
    """Reorder channels (n, T) in mV by name and apply the missing/non-finite/flat-lead policy."""
    try:
        order, extra = match_leads(names)
    except LeadNameError as err:
        raise RecordError(path, str(err)) from None
    n_samples = channels.shape[1]
    if n_samples == 0:
        raise RecordError(path, "the record holds no samples")
    present = [k for k, index in enumerate(order) if index is not None]
    if len(present) == len(CANONICAL_LEADS):
        if order == list(range(channels.shape[0])) and channels.dtype == np.float32:
            signal = channels  # already canonical: no copy
        else:
            signal = np.ascontiguousarray(channels[order], dtype=np.float32)
    else:
        signal = np.zeros((len(CANONICAL_LEADS), n_samples), dtype=np.float32)
        signal[present] = channels[[order[k] for k in present]]
    missing = [CANONICAL_LEADS[k] for k, index in enumerate(order) if index is None]
    meta["extra_channels"] = {name: np.asarray(channels[i], dtype=np.float32) for name, i in extra.items()}

    unusable = []  # leads present in the file but with too few finite samples
    finite = np.isfinite(signal)
    if not finite.all():
        for k in present:
            bad = ~finite[k]
            n_bad = int(bad.sum())
            if n_bad == 0:
                continue
            lead = CANONICAL_LEADS[k]
            if n_bad > MAX_FILL_FRACTION * n_samples:
                meta["notes"].append(f"lead {lead}: {n_bad} of {n_samples} samples are NaN/inf: treated as missing")
                missing.append(lead)
                unusable.append(lead)
                signal[k] = 0.0
            elif strict:
                raise RecordError(path, f"lead {lead} has {n_bad} NaN/inf samples (strict mode)")
            else:
                good = np.flatnonzero(~bad)
                signal[k, bad] = np.interp(np.flatnonzero(bad), good, signal[k, good])
                meta["filled_samples"][lead] = n_bad
                meta["notes"].append(f"lead {lead}: {n_bad} NaN/inf samples filled by linear interpolation")
    missing = [lead for lead in CANONICAL_LEADS if lead in missing]  # canonical order
    if missing and not allow_missing_leads:
        why = f"; {unusable} are mostly NaN/inf" if unusable else ""
        raise RecordError(path, f"missing leads {missing} (channels in the file: {list(names)}){why}")
    meta["missing_leads"] = missing
    meta["nan_leads"] = [lead for lead in CANONICAL_LEADS if lead in unusable]

    in_use = [k for k in range(len(CANONICAL_LEADS)) if CANONICAL_LEADS[k] not in missing]
    constant = signal.min(axis=1) == signal.max(axis=1)
    flat = [CANONICAL_LEADS[k] for k in in_use if constant[k]]
    if flat and strict:
        raise RecordError(path, f"flat (all-constant) leads {flat} (strict mode)")
    meta["flat_leads"] = flat
    return Record(signal=signal, fs=float(fs), leads=list(CANONICAL_LEADS), path=str(path), meta=meta)


def _unit_factor(path, unit: str) -> float:
    factor = _UNIT_TO_MV.get(unit.strip().lower())
    if factor is None:
        raise RecordError(path, f"unknown signal unit {unit!r} (expected mV, uV or V)")
    return factor


# ----------------------------------------------------------------------------- WFDB header

@dataclasses.dataclass
class _SignalSpec:
    file: str
    fmt: str
    samples_per_frame: int
    skew: int
    byte_offset: int
    gain: float
    baseline: int
    units: str
    name: str
    checksum: int | None  # 16-bit sum of the digital samples, when the header gives it


@dataclasses.dataclass
class _Header:
    record_name: str
    declared_nsig: int
    fs: float
    n_samples: int | None
    signals: list[_SignalSpec]
    comments: list[str]
    multi_segment: bool
    notes: list[str]


_FORMAT_RE = re.compile(r"^(\d+)(?:x(\d+))?(?::(\d+))?(?:\+(\d+))?$")
_GAIN_RE = re.compile(r"^([-+\d.eE]+)(?:\(([-+\d]+)\))?(?:/(.+))?$")


def _parse_header(header_path: Path) -> _Header:
    try:
        text = header_path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise FileNotFoundError(f"{header_path}: WFDB header not found") from None
    lines, comments = [], []
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            comments.append(line[1:].strip())
        else:
            lines.append(line.split("#", 1)[0].strip())  # drop any trailing comment
    if not lines:
        raise RecordError(header_path, "header has no record line")
    notes: list[str] = []
    fields = lines[0].split()
    if len(fields) < 2:
        raise RecordError(header_path, f"record line {lines[0]!r} lacks the signal count")
    name = fields[0]
    stem, ext = os.path.splitext(name)
    if ext.lower() in (".mat", ".dat", ".hea"):
        # Seen in a Georgia (G12EC) copy: 'E07500.mat 12 500 5000'. wfdb refuses it; the meaning is plain.
        notes.append(f"record line names {name!r}: read as record {stem!r}")
        name = stem
    try:
        declared = int(fields[1])
        fs = float(re.split(r"[/(]", fields[2])[0]) if len(fields) > 2 else WFDB_DEFAULT_FS
        n_samples = int(fields[3]) if len(fields) > 3 else None
        n_samples = n_samples or None  # 0 means "not given" in WFDB headers
    except ValueError:
        raise RecordError(header_path, f"cannot parse record line {lines[0]!r}") from None
    if fs <= 0:
        raise RecordError(header_path, f"sampling rate {fs} in record line {lines[0]!r} is not positive")
    multi_segment = "/" in name  # its lines name segments, not signals: left to wfdb
    signals = [] if multi_segment else [_parse_signal_line(header_path, line) for line in lines[1:]]
    return _Header(name, declared, fs, n_samples, signals, comments, multi_segment, notes)


def _parse_signal_line(header_path: Path, line: str) -> _SignalSpec:
    fields = line.split()
    if len(fields) < 2:
        raise RecordError(header_path, f"signal line {line!r} lacks a format")
    fmt_match = _FORMAT_RE.match(fields[1])
    if not fmt_match:
        raise RecordError(header_path, f"cannot parse the format {fields[1]!r} of signal line {line!r}")
    fmt, spf, skew, offset = fmt_match.groups()
    gain, baseline, units = WFDB_DEFAULT_GAIN, None, "mV"
    if len(fields) > 2:
        gain_match = _GAIN_RE.match(fields[2])
        if not gain_match:
            raise RecordError(header_path, f"cannot parse the gain {fields[2]!r} of signal line {line!r}")
        gain = float(gain_match.group(1)) or WFDB_DEFAULT_GAIN
        baseline = int(gain_match.group(2)) if gain_match.group(2) is not None else None
        units = gain_match.group(3) or "mV"
    adc_zero = int(fields[4]) if len(fields) > 4 else 0
    return _SignalSpec(
        file=fields[0], fmt=fmt, samples_per_frame=int(spf or 1), skew=int(skew or 0),
        byte_offset=int(offset or 0), gain=gain, baseline=adc_zero if baseline is None else baseline,
        units=units, name=" ".join(fields[8:]) if len(fields) > 8 else "",
        checksum=int(fields[6]) if len(fields) > 6 else None,
    )


def _header_meta(comments: list[str]) -> dict:
    """Age, sex and ``#Dx`` codes from header comments (CinC ``Age: 81``, LUDB ``<age>: 51``)."""
    meta = _empty_meta()
    meta["comments"] = comments
    for comment in comments:
        m = re.match(r"^<?\s*(age|sex|dx)\s*>?\s*:\s*(.*)$", comment, flags=re.IGNORECASE)
        if not m:
            continue
        key, value = m.group(1).lower(), m.group(2).strip()
        if key == "age":
            meta["age"] = _parse_age(value)
        elif key == "sex":
            meta["sex"] = _parse_sex(value)
        else:
            meta["dx"] = [code.strip() for code in value.split(",") if code.strip()]
    return meta


def _parse_age(value) -> float | None:
    number = re.search(r"\d+(?:\.\d+)?", str(value))  # '81', '>89', '45.5'; 'NaN'/'Unknown' -> None
    return float(number.group()) if number else None


def _parse_sex(value) -> str | None:
    value = str(value).strip().lower()
    return {"m": "M", "male": "M", "f": "F", "female": "F"}.get(value)


# ----------------------------------------------------------------------------- WFDB signals

def read_wfdb(record_path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    """Read a WFDB record named by its header, its signal file or neither (``.../JS00001``)."""
    record_path = Path(record_path)
    if record_path.suffix.lower() in (".hea", ".dat", ".mat"):
        record_path = record_path.with_suffix("")
    header_path = record_path.parent / f"{record_path.name}.hea"  # names may hold dots
    header = _parse_header(header_path)
    meta = _header_meta(header.comments)
    meta["notes"].extend(header.notes)
    specs = header.signals
    if header.multi_segment:
        channels, names, fs = _read_with_wfdb(record_path)
        return _to_record(header_path, channels, names, fs, meta, allow_missing_leads, strict)
    if not specs:
        raise RecordError(header_path, f"header declares {header.declared_nsig} signals but has no signal lines")
    simple = all(s.fmt in _NUMPY_FORMATS and s.samples_per_frame == 1 and s.skew == 0 for s in specs)
    if not simple:
        if header.declared_nsig != len(specs):
            raise RecordError(header_path, f"record line declares {header.declared_nsig} signals "
                                           f"but {len(specs)} signal lines follow")
        channels, names, fs = _read_with_wfdb(record_path)
        return _to_record(header_path, channels, names, fs, meta, allow_missing_leads, strict)

    # When the record line's count disagrees with the lines, the data must fit the lines exactly.
    count_damaged = header.declared_nsig != len(specs)
    blocks = []
    for file_name, indices in _group_by_file(specs).items():
        digital, sentinel_mask = _read_signal_file(header_path, record_path.parent / file_name,
                                                   [specs[i] for i in indices], header.n_samples,
                                                   count_damaged, meta["notes"])
        blocks.append((indices, digital, sentinel_mask))
    n_samples = blocks[0][1].shape[1]
    if any(block[1].shape[1] != n_samples for block in blocks):
        raise RecordError(header_path, "signal files hold different numbers of samples")
    if count_damaged:
        # The data fits the lines exactly (file size or .mat shape): the record line's count is wrong.
        meta["notes"].append(f"record line declares {header.declared_nsig} signals but {len(specs)} "
                             f"signal lines follow and the data holds exactly {len(specs)}: used the lines")

    if len(blocks) == 1 and _gains_scale_each_lead_to_unit_range(specs, blocks[0][1]):
        specs = [dataclasses.replace(s, gain=RANGE_SCALED_COUNTS_PER_MV) for s in specs]
        meta["notes"].append(
            "every lead's gain equals its own peak-to-peak count range (each lead scaled to 1 mV, as in "
            "LUDB 1.0.1), while the counts obey III = II - I: read with one gain, "
            f"{RANGE_SCALED_COUNTS_PER_MV:g} counts per mV, so the leads keep their relative sizes")
    parts = []
    for indices, digital, sentinel_mask in blocks:
        block_specs = [specs[i] for i in indices]
        _check_checksums(header_path, block_specs, digital, strict, meta)
        physical = _to_physical(header_path, digital, block_specs)
        if sentinel_mask is not None:
            physical[sentinel_mask] = np.nan
        parts.append((indices, physical))
    if len(parts) == 1 and parts[0][0] == list(range(len(specs))):
        channels = parts[0][1]  # the usual case: one signal file, no extra copy
    else:
        channels = np.empty((len(specs), n_samples), dtype=np.float64)
        for indices, physical in parts:
            channels[indices] = physical
    names = [s.name for s in specs]
    return _to_record(header_path, channels, names, header.fs, meta, allow_missing_leads, strict)


def _gains_scale_each_lead_to_unit_range(specs: list[_SignalSpec], digital: np.ndarray) -> bool:
    """True when the header's gains do not convert counts to mV but only stretch each lead to a
    peak-to-peak of exactly 1 (LUDB 1.0.1): every gain equals its lead's count range, the gains
    differ, and the counts themselves obey Einthoven's III = II - I, so they share one unit.
    Read with those gains, lead sizes are lost (and the limb identities break) for no reason."""
    gains = np.array([s.gain for s in specs])
    # cheap header checks first: most records (MIMIC's ~800k) have one gain and stop here
    if len(specs) < 3 or np.ptp(gains) == 0 or any(s.units.strip().lower() != "mv" for s in specs):
        return False
    ranges = digital.max(axis=1).astype(np.int64) - digital.min(axis=1)
    if not np.all(np.abs(gains - ranges) <= 0.5):
        return False
    try:
        order, _ = match_leads([s.name for s in specs])
    except LeadNameError:
        return False
    i, ii, iii = order[:3]  # canonical order starts I, II, III
    if None in (i, ii, iii):
        return False
    residual = digital[iii].astype(np.int64) - (digital[ii].astype(np.int64) - digital[i])
    return int(np.abs(residual).max()) <= 2  # rounding of a derived lead


def _to_physical(header_path: Path, digital: np.ndarray, specs: list[_SignalSpec]) -> np.ndarray:
    """(digital - baseline) / gain, in mV. Computed in float32 when that is exact up to the final
    rounding (16-bit samples, gains that float32 represents exactly, no unit scaling): the result
    then equals wfdb's float64 values rounded to float32, at a quarter of the cost."""
    gain = np.array([s.gain for s in specs], dtype=np.float64)[:, None]
    baseline = np.array([s.baseline for s in specs], dtype=np.float64)[:, None]
    factor = np.array([_unit_factor(header_path, s.units) for s in specs])[:, None]
    single = (digital.dtype.itemsize <= 2 and np.all(factor == 1.0)
              and np.all(gain.astype(np.float32) == gain) and np.all(np.abs(baseline) < 2**15))
    physical = digital.astype(np.float32 if single else np.float64)
    physical -= baseline.astype(physical.dtype)
    physical /= gain.astype(physical.dtype)
    if not single and not np.all(factor == 1.0):
        physical *= factor
    return physical


def _check_checksums(header_path: Path, specs: list[_SignalSpec], digital: np.ndarray, strict: bool,
                     meta: dict) -> None:
    """Compare the header's 16-bit checksums with the data: a mismatch means corrupted samples."""
    sums = digital.sum(axis=1, dtype=np.int64)
    # Writers differ on the sign convention (wfdb writes 0..65535, others -32768..32767): compare mod 2^16.
    wrong = [s.name for s, total in zip(specs, sums) if s.checksum is not None and (s.checksum - total) % 65536]
    if not wrong:
        return
    problem = f"samples of {wrong} do not match the header's checksums (corrupted signal file?)"
    if strict:
        raise RecordError(header_path, problem + " (strict mode)")
    meta["notes"].append(problem)
    meta["checksum_mismatch"] += wrong


def _group_by_file(specs: list[_SignalSpec]) -> dict[str, list[int]]:
    groups: dict[str, list[int]] = {}
    for i, spec in enumerate(specs):
        groups.setdefault(spec.file, []).append(i)
    return groups


def _read_signal_file(header_path: Path, file: Path, specs: list[_SignalSpec], n_samples: int | None,
                      exact: bool, notes: list[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """Integer samples (n_signals, T) of one signal file and the mask of 'invalid sample' codes."""
    fmts = {s.fmt for s in specs}
    if len(fmts) != 1 or len({s.byte_offset for s in specs}) != 1:
        raise RecordError(header_path, f"signals of {file.name} mix formats or byte offsets")
    fmt = fmts.pop()
    if not file.exists():
        raise FileNotFoundError(f"{file}: signal file named in {header_path} not found")
    if file.suffix.lower() == ".mat":
        digital = _read_mat_val(header_path, file, len(specs), n_samples)
    else:
        digital = _read_dat(header_path, file, fmt, specs[0].byte_offset, len(specs), n_samples, exact, notes)
    sentinel = _NUMPY_FORMATS[fmt][2]
    mask = digital == sentinel
    return digital, (mask if mask.any() else None)


def _read_dat(header_path: Path, file: Path, fmt: str, byte_offset: int, n_signals: int,
              n_samples: int | None, exact: bool, notes: list[str]) -> np.ndarray:
    frame_bytes = _FORMAT_BYTES[fmt] * n_signals
    size = file.stat().st_size - byte_offset
    if n_samples is None:
        if exact:
            raise RecordError(header_path, "signal count disagrees with the signal lines and no length is given")
        if size % frame_bytes:
            raise RecordError(file, f"{size} data bytes are not a whole number of {n_signals}-signal "
                                    f"frames of format {fmt} and the header ({header_path.name}) gives no length")
        n_samples = size // frame_bytes
    needed = n_samples * frame_bytes
    if size < needed:
        raise RecordError(file, f"truncated: header {header_path.name} declares {n_samples} samples x "
                                f"{n_signals} signals (format {fmt}) = {needed} bytes, the file holds {size} "
                                f"({size // frame_bytes} whole samples)")
    if size > needed:
        if exact:
            raise RecordError(file, f"holds {size} data bytes, not the {needed} that {n_samples} samples x "
                                    f"{n_signals} signal lines need, so the signal count cannot be trusted")
        notes.append(f"{file.name}: {size - needed} bytes beyond the {n_samples} samples the header declares, ignored")
    dtype, offset, _ = _NUMPY_FORMATS[fmt]
    if fmt == "24":
        raw = np.fromfile(file, dtype=np.uint8, count=needed, offset=byte_offset).reshape(-1, 3).astype(np.int32)
        values = raw[:, 0] | (raw[:, 1] << 8) | (raw[:, 2] << 16)
        values = np.where(values >= 2**23, values - 2**24, values)
    else:
        values = np.fromfile(file, dtype=dtype, count=n_samples * n_signals, offset=byte_offset)
    if offset:  # offset-binary formats 80 and 160 hold unsigned values
        values = values.astype(np.int16 if fmt == "80" else np.int32) - offset
    return values.reshape(n_samples, n_signals).T  # a view: the float conversion makes the only copy


def _read_mat_val(header_path: Path, file: Path, n_signals: int, n_samples: int | None) -> np.ndarray:
    """The ``val`` matrix (signals x samples) of a PhysioNet/CinC ``.mat`` signal file."""
    import scipy.io

    try:
        val = scipy.io.loadmat(file, variable_names=["val"]).get("val")
    except Exception as err:  # scipy raises several types for damaged MATLAB files
        raise RecordError(file, f"cannot read MATLAB file ({type(err).__name__}: {err})") from None
    if val is None or val.ndim != 2:
        raise RecordError(file, "MATLAB file has no 2-D 'val' matrix")
    if val.shape[0] != n_signals:
        raise RecordError(file, f"'val' holds {val.shape[0]} signals, header {header_path.name} "
                                f"has {n_signals} signal lines for it")
    if n_samples is not None and val.shape[1] != n_samples:
        raise RecordError(file, f"'val' holds {val.shape[1]} samples, header {header_path.name} "
                                f"declares {n_samples}")
    return val


def _read_with_wfdb(record_path: Path) -> tuple[np.ndarray, list[str], float]:
    """Formats numpy does not decode here (212, 310, FLAC, multi-segment): wfdb's own reader."""
    import wfdb

    try:
        rec = wfdb.rdrecord(str(record_path), physical=True)
    except Exception as err:
        raise RecordError(record_path, f"wfdb cannot read the record ({type(err).__name__}: {err})") from None
    units = rec.units or ["mV"] * rec.n_sig
    factor = np.array([_unit_factor(record_path, u or "mV") for u in units])[:, None]
    return rec.p_signal.T * factor, list(rec.sig_name), float(rec.fs)


# ----------------------------------------------------------------------------- CPSC2018 original .mat

def read_cpsc2018_mat(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    """The CPSC2018 TrainingSet ``.mat``: struct ``ECG`` with ``data`` (12 x T, mV), ``age``, ``sex``."""
    import scipy.io

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: record not found")
    try:
        content = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as err:
        raise RecordError(path, f"cannot read MATLAB file ({type(err).__name__}: {err})") from None
    if "ECG" not in content:
        hint = " (a PhysioNet 'val' file needs its .hea header next to it)" if "val" in content else ""
        raise RecordError(path, f"no 'ECG' struct in the MATLAB file{hint}")
    ecg = content["ECG"]
    data = np.asarray(getattr(ecg, "data", None), dtype=np.float64)
    if data.ndim != 2 or data.shape[0] != len(CANONICAL_LEADS):
        raise RecordError(path, f"ECG.data has shape {data.shape}, expected (12, samples)")
    meta = _empty_meta()
    meta["age"] = _parse_age(getattr(ecg, "age", ""))
    meta["sex"] = _parse_sex(getattr(ecg, "sex", ""))
    return _to_record(path, data, list(CANONICAL_LEADS), CPSC2018_FS, meta, allow_missing_leads, strict)


# ----------------------------------------------------------------------------- SPH .h5

@functools.lru_cache(maxsize=8)
def _sph_metadata(csv_path: str, mtime: float) -> dict:
    import pandas as pd

    table = pd.read_csv(csv_path, dtype=str)
    return {row["ECG_ID"]: row for row in table.to_dict("records")}


def read_sph(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    """An SPH record: ``ecg`` (12, T) float16 mV in the standard lead order, metadata from ``metadata.csv``."""
    import h5py

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: record not found")
    try:
        with h5py.File(path, "r") as f:
            if "ecg" not in f:
                raise RecordError(path, f"no 'ecg' dataset (found {list(f.keys())})")
            data = f["ecg"][()]
    except OSError as err:
        raise RecordError(path, f"cannot read HDF5 file ({err})") from None
    if data.ndim != 2 or data.shape[0] != len(CANONICAL_LEADS):
        raise RecordError(path, f"'ecg' has shape {data.shape}, expected (12, samples)")
    meta = _empty_meta()
    fs = SPH_FS
    csv_path = path.parent / "metadata.csv"
    row = None
    if csv_path.exists():
        row = _sph_metadata(str(csv_path), csv_path.stat().st_mtime).get(path.name)
    if row is None:
        meta["notes"].append("no metadata.csv row for this file: age, sex and dx unknown")
    else:
        meta["age"] = _parse_age(row.get("Age") or "")
        meta["sex"] = _parse_sex(row.get("Sex") or "")
        meta["dx"] = [c.strip() for c in str(row.get("SNOMEDCTCode") or "").split(",") if c.strip()]
        meta["extra"] = {k: v for k, v in row.items() if isinstance(v, str)}
        if row.get("fs"):
            fs = float(row["fs"])
    return _to_record(path, data.astype(np.float32), list(CANONICAL_LEADS), fs, meta,
                      allow_missing_leads, strict)


# ----------------------------------------------------------------------------- CODE-15 rows

_open_hdf5: dict[tuple, object] = {}


def _code15_file(file: str):
    """An open h5py file, kept per process (reopening per row would dominate reading time)."""
    import h5py

    try:
        stat = os.stat(file)
    except FileNotFoundError:
        raise FileNotFoundError(f"{file}: CODE-15 file not found") from None
    # The modification time is part of the key so that a rewritten file is reopened.
    key = (os.getpid(), os.path.abspath(file), stat.st_mtime_ns, stat.st_size)
    handle = _open_hdf5.get(key)
    if handle is None:
        for old in [k for k in _open_hdf5 if k[0] != key[0] or k[1] == key[1]]:
            del _open_hdf5[old]  # inherited through fork (not ours to use) or outdated
        try:
            handle = h5py.File(file, "r")
        except OSError as err:
            raise RecordError(file, f"cannot read HDF5 file ({err})") from None
        _open_hdf5[key] = handle
    return handle


def read_code15(file, row: int, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    """Row ``row`` of a CODE-15 ``exams_partK.hdf5``: ``tracings`` (N, 4096, 12) at 400 Hz.

    Lead order is I, II, III, aVR, aVL, aVF, V1-V6 (the dataset's documented DI, DII, DIII, ...).
    Values are taken as millivolts, as stored: the authors' companion code documents its input as
    "the signal in V multiplied by 1000" (i.e. mV) and feeds the tracings unscaled. No CODE-15 file
    was at hand to confirm amplitudes; check a few records before trusting it. The zero padding that centres
    7 s / 10 s exams in 4096 samples is trimmed (frames where all 12 leads are exactly 0 at both
    ends; counts in ``meta["padding"]``). The last row of each file is padding (exam_id 0): rejected.
    """
    file = str(file)
    where = f"{file}#{row}"
    handle = _code15_file(file)
    if "tracings" not in handle or "exam_id" not in handle:
        raise RecordError(where, f"not a CODE-15 file: needs 'tracings' and 'exam_id' (found {list(handle.keys())})")
    tracings = handle["tracings"]
    if tracings.ndim != 3 or tracings.shape[2] != len(CANONICAL_LEADS):
        raise RecordError(where, f"'tracings' has shape {tracings.shape}, expected (N, samples, 12)")
    if not 0 <= row < tracings.shape[0]:
        raise RecordError(where, f"row {row} out of range (the file has {tracings.shape[0]} rows)")
    exam_id = int(handle["exam_id"][row])
    if exam_id == 0:
        raise RecordError(where, "padding row (exam_id 0), not an exam")
    data = np.asarray(tracings[row], dtype=np.float32).T  # (12, 4096)
    active = np.flatnonzero(np.any(data != 0, axis=0))
    meta = _empty_meta()
    meta["exam_id"] = exam_id
    if active.size:
        left, right = int(active[0]), int(data.shape[1] - 1 - active[-1])
        data = data[:, left:data.shape[1] - right]
        meta["padding"] = [left, right]
    else:
        meta["padding"] = [0, 0]
    return _to_record(where, np.ascontiguousarray(data), list(CANONICAL_LEADS), CODE15_FS, meta,
                      allow_missing_leads, strict)


__all__ = ["Record", "RecordError", "read_record", "read_wfdb", "read_cpsc2018_mat", "read_sph",
           "read_code15", "MAX_FILL_FRACTION"]
