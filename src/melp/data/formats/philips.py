"""Philips Sierra ECG XML (``<restingecgdata>``, PageWriter/TraceMaster exports, versions 1.03-1.04.02).

Waveforms are in ``parsedwaveforms``, base64, either plain int16 lead after lead or XLI-compressed
(Philips' LZW + second-difference scheme). XLI files are decoded with the ``sierraecg`` package
(MIT licence, the Python port of sierra-ecg-tools), which also rebuilds leads III, aVR, aVL and
aVF: XLI stores them as residuals. Uncompressed files are split here instead: ``sierraecg`` 0.4
fails on them (it writes the residual step into a read-only buffer), and that step, which the
reference C# implementation applies to XLI data only, would be wrong for them anyway. Amplitude: ``signalresolution`` (1.03) or ``resolution`` (1.04) uV per
unit. Statements: the ``interpretations`` section's ``statement/leftstatement`` texts (with the
``rightstatement`` reason after a colon dropped: it is the criterion, not the finding), preceded
by the ``severity`` line (e.g. "ABNORMAL ECG"). The 1 mV calibration pulse PageWriters append after
the ECG is cut (``common.trim_calibration_pulse``, noted).
"""
from __future__ import annotations

import base64
import binascii
import re
from pathlib import Path

import numpy as np

from melp.data.formats.common import lead_label, local, parse_age, parse_sex, parse_xml, trim_calibration_pulse
from melp.data.leads import CANONICAL_LEADS
from melp.data.readers import Record, RecordError, _empty_meta, _to_record

UV_TO_MV = 1e-3
STANDARD_ACQUISITIONS = ("STD-12", "10-WIRE")


def _find(element, name: str):
    """First descendant with local name ``name`` (the file's namespace varies by version)."""
    for child in element.iter():
        if local(child.tag) == name:
            return child
    return None


def _find_text(element, name: str) -> str | None:
    found = _find(element, name) if element is not None else None
    return found.text.strip() if found is not None and found.text else None


def statements(root) -> list[str]:
    interpretation = _find(root, "interpretation")
    if interpretation is None:
        return []
    out = []
    severity = _find_text(interpretation, "severity")
    if severity:
        out.append(severity.strip(" -"))
    for statement in (e for e in interpretation.iter() if local(e.tag) == "statement"):
        text = _find_text(statement, "leftstatement")
        if text:
            out.append(re.sub(r"\s+", " ", text).strip())
    return out


def _signal_characteristics(path, root) -> tuple[float, float, str]:
    chars = _find(root, "signalcharacteristics")
    if chars is None:
        raise RecordError(path, "Philips XML without <signalcharacteristics>")
    try:
        fs = float(_find_text(chars, "samplingrate"))
        resolution = float(_find_text(chars, "signalresolution") or _find_text(chars, "resolution"))
    except (TypeError, ValueError):
        raise RecordError(path, "<signalcharacteristics> lacks a numeric samplingrate or resolution") from None
    return fs, resolution, _find_text(chars, "acquisitiontype") or ""


def _uncompressed(path, waveforms, fs: float, acquisition: str) -> tuple[list[str], list[np.ndarray]]:
    labels = (waveforms.get("leadlabels") or "").split()
    if not labels and acquisition.upper() in STANDARD_ACQUISITIONS:
        labels = list(CANONICAL_LEADS)  # 1.03 files name no leads: the standard 12 in their usual order
    if not labels:
        raise RecordError(path, f"uncompressed <parsedwaveforms> without leadlabels (acquisition {acquisition!r})")
    count = int(waveforms.get("numberofleads") or len(labels))
    labels = labels[:count]
    try:
        duration_ms = float(waveforms.get("durationperchannel"))
    except (TypeError, ValueError):
        raise RecordError(path, "<parsedwaveforms> lacks durationperchannel") from None
    n = int(round(duration_ms * fs / 1000))
    encoding = waveforms.get("dataencoding", "Base64")
    text = waveforms.text or ""
    if encoding == "Plain":
        values = np.array(text.split(), dtype=np.float64)
    elif encoding == "Base64":
        try:
            raw = base64.b64decode(re.sub(r"\s+", "", text), validate=True)
        except (binascii.Error, ValueError) as err:
            raise RecordError(path, f"<parsedwaveforms> is not valid base64 ({err}); truncated?") from None
        if len(raw) % 2:
            raise RecordError(path, f"{len(raw)} waveform bytes are not a whole number of int16 samples")
        values = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    else:
        raise RecordError(path, f"waveform data encoding {encoding!r} unsupported (Base64 or Plain)")
    if values.size < n * len(labels):
        raise RecordError(path, f"<parsedwaveforms> holds {values.size} samples, {len(labels)} leads x {n} "
                                f"({duration_ms:g} ms at {fs:g} Hz) need {n * len(labels)}; truncated?")
    return labels, [values[k * n:(k + 1) * n] for k in range(len(labels))]


def _compressed(path) -> tuple[list[str], list[np.ndarray]]:
    import sierraecg

    try:
        ecg = sierraecg.read_file(str(path))
    except Exception as err:  # the package raises its own errors, ValueError, IndexError... on damage
        raise RecordError(path, f"cannot decode the XLI-compressed waveforms ({type(err).__name__}: {err})") from None
    return [lead.label for lead in ecg.leads], [np.asarray(lead.samples, dtype=np.float64) for lead in ecg.leads]


def read_philips(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    path = Path(path)
    root = parse_xml(path)
    if local(root.tag) != "restingecgdata":
        raise RecordError(path, f"root element <{local(root.tag)}>, expected <restingecgdata> (Philips)")
    fs, resolution, acquisition = _signal_characteristics(path, root)
    waveforms = _find(root, "parsedwaveforms")
    if waveforms is None:
        raise RecordError(path, "Philips XML without <parsedwaveforms>")
    method = waveforms.get("compressmethod") or waveforms.get("compression") or ""
    flag = (waveforms.get("compressflag") or "").lower()
    compressed = method.upper() == "XLI" and flag != "false"
    if method and method.upper() != "XLI" and flag != "false":
        raise RecordError(path, f"waveform compression {method!r} unsupported (XLI or none)")
    labels, channels = _compressed(path) if compressed else _uncompressed(path, waveforms, fs, acquisition)
    lengths = {len(c) for c in channels}
    if len(lengths) != 1:
        raise RecordError(path, f"leads hold different numbers of samples: {dict(zip(labels, map(len, channels)))}")
    meta = _empty_meta()
    meta["statements"] = statements(root)
    meta["format"] = "Philips Sierra XML" + (" (XLI)" if compressed else "")
    patient = _find(root, "generalpatientdata")
    if patient is not None:
        meta["age"] = parse_age(_find_text(patient, "years"))
        meta["sex"] = parse_sex(_find_text(patient, "sex"))
        meta["patient_id"] = _find_text(patient, "patientid")
    data = trim_calibration_pulse(np.stack(channels) * (resolution * UV_TO_MV), fs, meta["notes"])
    return _to_record(path, data, [lead_label(name) for name in labels], fs, meta, allow_missing_leads, strict)
