"""GE MUSE XML (``<RestingECG>``), the export of GE's MUSE ECG management system.

Waveforms: ``Waveform`` blocks (``WaveformType`` Rhythm, preferred, or Median), each with
``LeadData`` per lead: ``LeadID``, ``WaveFormData`` (base64 little-endian int16, checked against
``LeadDataCRC32``, the CRC-32 of the decoded bytes, where present),
``LeadAmplitudeUnitsPerBit`` and ``LeadAmplitudeUnits`` (MICROVOLTS), ``LeadSampleCountTotal``;
rate ``SampleBase`` x 10^``SampleExponent``. MUSE usually stores the 8 independent leads
(I, II, V1-V6): III, aVR, aVL, aVF are then computed. Statements: the ``Diagnosis`` block (the
confirmed reading), else ``OriginalDiagnosis`` (the machine's), as sentences: ``StmtText``
fragments are joined until a statement flagged ``ENDSLINE``. The PyPI packages that handle MUSE
XML convert it to DICOM (ecg2dcm, xml2dcm-ecg) rather than return samples, so it is read here.
"""
from __future__ import annotations

import base64
import binascii
import re
import zlib
from pathlib import Path

import numpy as np

from melp.data.formats.common import derive_limb_leads, lead_label, parse_age, parse_sex, parse_xml, unit_factor
from melp.data.readers import Record, RecordError, _empty_meta, _to_record


def _text(element, name: str, default: str | None = None) -> str | None:
    child = element.find(name)
    if child is None or child.text is None:
        return default
    return child.text.strip()


def _number(path, element, name: str, where: str) -> float:
    value = _text(element, name)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RecordError(path, f"{where}: {name} is {value!r}, not a number") from None


def statements(block) -> list[str]:
    """Sentences of a MUSE Diagnosis block: fragments joined until one flagged ENDSLINE."""
    sentences, parts = [], []
    for stmt in block.findall("DiagnosisStatement"):
        text = _text(stmt, "StmtText", "")
        if text:
            parts.append(text)
        flags = {f.text.strip().upper() for f in stmt.findall("StmtFlag") if f.text}
        if "ENDSLINE" in flags and parts:
            sentences.append(" ".join(parts))
            parts = []
    if parts:
        sentences.append(" ".join(parts))
    return [re.sub(r"\s+", " ", s).strip() for s in sentences if s.strip()]


def _choose_waveform(path, root):
    waveforms = root.findall("Waveform")
    if not waveforms:
        raise RecordError(path, "MUSE XML without a <Waveform> element")
    by_type = {(_text(w, "WaveformType", "") or "").lower(): w for w in waveforms}
    for kind in ("rhythm", "median"):
        if kind in by_type:
            return by_type[kind], kind
    return waveforms[0], (_text(waveforms[0], "WaveformType", "") or "unknown").lower()


def _lead(path, lead) -> tuple[str, np.ndarray]:
    name = _text(lead, "LeadID")
    if not name:
        raise RecordError(path, "a <LeadData> without <LeadID>")
    where = f"lead {name}"
    raw = re.sub(r"\s+", "", _text(lead, "WaveFormData", "") or "")
    if not raw:
        raise RecordError(path, f"{where}: empty <WaveFormData>")
    try:
        data = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as err:
        raise RecordError(path, f"{where}: <WaveFormData> is not valid base64 ({err}); truncated?") from None
    declared = _text(lead, "LeadSampleCountTotal")
    if len(data) % 2:
        raise RecordError(path, f"{where}: {len(data)} bytes of waveform data is not a whole number of int16 samples; truncated?")
    samples = np.frombuffer(data, dtype="<i2")
    if declared is not None and declared.isdigit() and int(declared) != samples.size:
        raise RecordError(path, f"{where}: LeadSampleCountTotal says {declared} samples, "
                                f"<WaveFormData> holds {samples.size}; truncated?")
    crc = (_text(lead, "LeadDataCRC32") or "").strip()
    if re.fullmatch(r"-?\d+", crc) and int(crc) % 2**32 != (computed := zlib.crc32(data)):  # may be stored signed
        raise RecordError(path, f"{where}: the waveform data fails its CRC-32 check (LeadDataCRC32 {crc}, "
                                f"computed {computed}): the file is damaged")
    per_bit = _number(path, lead, "LeadAmplitudeUnitsPerBit", where)
    factor = unit_factor(path, _text(lead, "LeadAmplitudeUnits", "") or "")
    return lead_label(name), samples.astype(np.float64) * (per_bit * factor)


def read_muse(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    path = Path(path)
    root = parse_xml(path)
    if root.tag != "RestingECG":
        raise RecordError(path, f"root element <{root.tag}>, expected <RestingECG> (GE MUSE)")
    waveform, kind = _choose_waveform(path, root)
    base = _number(path, waveform, "SampleBase", f"{kind} waveform")
    exponent = float(_text(waveform, "SampleExponent", "0") or 0)
    fs = base * 10 ** exponent
    if fs <= 0:
        raise RecordError(path, f"sampling rate {fs} Hz is not positive")
    leads = waveform.findall("LeadData")
    if not leads:
        raise RecordError(path, f"the {kind} waveform holds no <LeadData>")
    names, channels = [], []
    for lead in leads:
        name, values = _lead(path, lead)
        names.append(name)
        channels.append(values)
    meta = _empty_meta()
    if kind != "rhythm":
        meta["notes"].append(f"no rhythm waveform: the {kind} waveform was read")
    if len({len(c) for c in channels}) > 1:
        raise RecordError(path, f"leads hold different numbers of samples: {dict(zip(names, map(len, channels)))}")
    derive_limb_leads(channels, names, meta["notes"])

    demographics = root.find("PatientDemographics")
    if demographics is not None:
        units = (_text(demographics, "AgeUnits", "YEARS") or "YEARS").upper()
        age = parse_age(_text(demographics, "PatientAge"))
        meta["age"] = age if units == "YEARS" else None
        meta["sex"] = parse_sex(_text(demographics, "Gender"))
        meta["patient_id"] = _text(demographics, "PatientID")
    confirmed, original = root.find("Diagnosis"), root.find("OriginalDiagnosis")
    meta["statements"] = statements(confirmed) if confirmed is not None else []
    meta["original_statements"] = statements(original) if original is not None else []
    if not meta["statements"] and meta["original_statements"]:
        meta["statements"] = list(meta["original_statements"])
    meta["format"] = "GE MUSE XML"
    return _to_record(path, np.stack(channels), names, fs, meta, allow_missing_leads, strict)
