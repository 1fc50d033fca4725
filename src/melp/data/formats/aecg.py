"""HL7 aECG (``<AnnotatedECG xmlns="urn:hl7-org:v3">``), the FDA's annotated-ECG format.

The rhythm ``series`` (code RHYTHM; else the first series) holds a ``sequenceSet`` whose
``sequence`` elements are the time axis (``TIME_ABSOLUTE`` ``GLIST_TS`` or ``TIME_RELATIVE``
``GLIST_PQ``, whose ``increment`` gives the sample period in s or ms) and one per lead
(code ``MDC_ECG_LEAD_*``, value ``SLIST_PQ``: physical = ``origin`` + ``scale`` x ``digits``, each
with its unit). Statements: the series' ``MDC_ECG_INTERPRETATION_STATEMENT`` (and ``_SUMMARY``)
annotations with a text value. Age and sex from the trial subject's demographics, when given.
The one PyPI parser, ``aecg`` (0.1.x), requires Python >= 3.12 (melp supports 3.10), so this is
parsed here with ElementTree (through defusedxml: no entity expansion).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from melp.data.formats.common import (derive_limb_leads, lead_label, parse_age, parse_sex, parse_xml,
                                      trim_calibration_pulse, unit_factor)
from melp.data.readers import Record, RecordError, _empty_meta, _to_record

HL7 = "{urn:hl7-org:v3}"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6}
STATEMENT_CODES = ("MDC_ECG_INTERPRETATION_STATEMENT", "MDC_ECG_INTERPRETATION_SUMMARY")


def _code(element) -> str:
    code = element.find(f"{HL7}code")
    return (code.get("code") or "") if code is not None else ""


def _float(path, element, attribute: str, where: str) -> float:
    value = element.get(attribute) if element is not None else None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise RecordError(path, f"{where}: {attribute}={value!r} is not a number") from None


def _rhythm_series(path, root):
    series = [s for s in root.iter(f"{HL7}series")]
    if not series:
        raise RecordError(path, "aECG without a <series> of waveforms")
    for s in series:
        if _code(s).upper() == "RHYTHM":
            return s
    return series[0]


def _period(path, sequence) -> float:
    value = sequence.find(f"{HL7}value")
    increment = value.find(f"{HL7}increment") if value is not None else None
    if increment is None:
        raise RecordError(path, f"time sequence {_code(sequence)} has no <increment>")
    unit = (increment.get("unit") or "s").strip()
    if unit not in _TIME_UNITS:
        raise RecordError(path, f"time increment unit {unit!r} unknown (expected s or ms)")
    period = _float(path, increment, "value", "time increment") * _TIME_UNITS[unit]
    if period <= 0:
        raise RecordError(path, f"time increment {period} s is not positive")
    return period


def _lead(path, sequence, code: str) -> np.ndarray:
    value = sequence.find(f"{HL7}value")
    if value is None or value.get(XSI_TYPE, "SLIST_PQ").split(":")[-1] != "SLIST_PQ":
        raise RecordError(path, f"lead {code}: value is not an SLIST_PQ")
    origin, scale, digits = (value.find(f"{HL7}{name}") for name in ("origin", "scale", "digits"))
    if scale is None or digits is None:
        raise RecordError(path, f"lead {code}: SLIST_PQ lacks <scale> or <digits>")
    text = digits.text or ""
    try:
        numbers = np.array(text.split(), dtype=np.float64)
    except ValueError:
        raise RecordError(path, f"lead {code}: <digits> holds something that is not a number") from None
    scale_mv = _float(path, scale, "value", f"lead {code} scale") * unit_factor(path, scale.get("unit") or "")
    origin_mv = 0.0
    if origin is not None:
        origin_mv = _float(path, origin, "value", f"lead {code} origin") * unit_factor(path, origin.get("unit") or "")
    return origin_mv + scale_mv * numbers


def _statements(series) -> list[str]:
    out = []
    for annotation in series.iter(f"{HL7}annotation"):
        if _code(annotation).upper() not in STATEMENT_CODES:
            continue
        value = annotation.find(f"{HL7}value")
        text = " ".join((value.text or "").split()) if value is not None else ""
        text = text.rstrip(" ,;")  # Philips' converter leaves empty fields: "SINUS BRADYCARDIA, V-rate<60, ,"
        if text:
            out.append(text)
    return list(dict.fromkeys(out))


def _demographics(root, meta: dict) -> None:
    for subject in root.iter(f"{HL7}trialSubject"):
        identifier = subject.find(f"{HL7}id")
        if identifier is not None:
            meta["patient_id"] = identifier.get("extension") or identifier.get("root")
        break
    for person in root.iter(f"{HL7}subjectDemographicPerson"):
        gender = person.find(f"{HL7}administrativeGenderCode")
        if gender is not None:
            meta["sex"] = parse_sex(gender.get("code"))
        break
    for observation in root.iter(f"{HL7}relatedObservation"):
        if _code(observation) == "21612-7":  # LOINC "Reported age"
            value = observation.find(f"{HL7}value")
            if value is not None and (value.get("unit") or "a") == "a":
                meta["age"] = parse_age(value.get("value"))


def read_aecg(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    path = Path(path)
    root = parse_xml(path)
    if root.tag != f"{HL7}AnnotatedECG":
        raise RecordError(path, f"root element <{root.tag}>, expected <AnnotatedECG> in namespace urn:hl7-org:v3")
    series = _rhythm_series(path, root)
    sequence_set = series.find(f"{HL7}component/{HL7}sequenceSet")
    if sequence_set is None:
        raise RecordError(path, f"series {_code(series) or '?'} has no <sequenceSet>")
    period, names, channels = None, [], []
    for sequence in sequence_set.iter(f"{HL7}sequence"):
        code = _code(sequence)
        if code.upper().startswith("TIME_"):
            period = _period(path, sequence)
        elif code.upper().startswith("MDC_ECG_LEAD_"):
            names.append(lead_label(code))
            channels.append(_lead(path, sequence, code))
        # other sequences (e.g. respiration) are not ECG leads: skipped
    if period is None:
        raise RecordError(path, "no TIME_ABSOLUTE/TIME_RELATIVE sequence: sampling rate unknown")
    if not channels:
        raise RecordError(path, "the rhythm series holds no MDC_ECG_LEAD_* sequence")
    meta = _empty_meta()
    lengths = dict(zip(names, map(len, channels)))
    if len(set(lengths.values())) > 1:
        raise RecordError(path, f"leads hold different numbers of samples: {lengths}")
    derive_limb_leads(channels, names, meta["notes"])
    _demographics(root, meta)
    meta["statements"] = _statements(series)
    meta["format"] = "HL7 aECG"
    if _code(series).upper() != "RHYTHM":
        meta["notes"].append(f"no RHYTHM series: series {_code(series) or '?'} was read")
    fs = round(1.0 / period, 6)
    signal = trim_calibration_pulse(np.stack(channels), fs, meta["notes"])  # aECG converted from Philips
    return _to_record(path, signal, names, fs, meta, allow_missing_leads, strict)
