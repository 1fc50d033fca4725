"""Helpers shared by the hospital-format readers: lead labels, units, safe XML, derived leads."""
from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import numpy as np

from melp.data.readers import RecordError, _unit_factor
from melp.data.readers import _parse_age as parse_age  # noqa: F401  (the WFDB readers' own, re-exported)
from melp.data.readers import _parse_sex as parse_sex  # noqa: F401

# Words that machines put around a lead's name: "Lead I (Einthoven)", "ECG V1", "MDC_ECG_LEAD_AVR".
_LABEL_PREFIX = re.compile(r"^(?:mdc_ecg_lead_|lead[\s_-]*|ecg[\s_-]*|ekg[\s_-]*)+", re.IGNORECASE)
_PARENTHESIS = re.compile(r"\s*\(.*?\)\s*")

# Unit spellings of the formats (GE MUSE writes words) -> the spellings readers._unit_factor knows.
_UNIT_WORDS = {"microvolts": "uV", "microvolt": "uV", "millivolts": "mV", "millivolt": "mV",
               "volts": "V", "volt": "V", "nanovolts": "nV", "nanovolt": "nV"}

LIMB_LEADS_DERIVED = ("III", "aVR", "aVL", "aVF")


def lead_label(label: str) -> str:
    """A channel label reduced to the lead name it carries ("Lead I (Einthoven)" -> "I").

    Only the decoration is removed; whether the rest is a lead is for ``match_leads`` to say,
    so an unknown label still reaches the caller's error message.
    """
    text = _PARENTHESIS.sub(" ", str(label)).strip()
    stripped = _LABEL_PREFIX.sub("", text).strip()
    return stripped or text


def unit_factor(path, unit: str) -> float:
    """mV per unit of ``unit`` (mV, uV, µV, V, MICROVOLTS, ...); RecordError for anything else."""
    unit = str(unit or "").strip()
    return _unit_factor(path, _UNIT_WORDS.get(unit.lower(), unit))


def parse_xml(path) -> ET.Element:
    """The root of an XML file, parsed without expanding entities or fetching anything.

    Declared entities (billion laughs, external entities) are refused outright. A bare external
    DOCTYPE line is allowed: GE MUSE exports carry ``<!DOCTYPE RestingECG SYSTEM "restecg.dtd">``,
    and the parser never loads it.
    """
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    try:
        return SafeET.parse(str(path), forbid_dtd=False, forbid_entities=True, forbid_external=True).getroot()
    except DefusedXmlException as err:
        raise RecordError(path, f"XML declares entities or external references ({type(err).__name__}): "
                                "refused, an ECG export never needs them") from None
    except ET.ParseError as err:
        raise RecordError(path, f"not well-formed XML ({err})") from None


def local(tag: str) -> str:
    """An element's tag without its namespace ("{urn:hl7-org:v3}series" -> "series")."""
    return tag.rsplit("}", 1)[-1]


def derive_limb_leads(channels: list[np.ndarray], names: list[str], notes: list[str]) -> None:
    """Add III, aVR, aVL and aVF computed from I and II (Einthoven and Goldberger) when a file
    stores only the 8 independent leads, as GE MUSE and many aECG files do."""
    have = {name: k for k, name in enumerate(names)}
    if "I" not in have or "II" not in have or any(lead in have for lead in LIMB_LEADS_DERIVED):
        return
    lead_i, lead_ii = channels[have["I"]], channels[have["II"]]
    derived = {"III": lead_ii - lead_i, "aVR": -(lead_i + lead_ii) / 2,
               "aVL": lead_i - lead_ii / 2, "aVF": lead_ii - lead_i / 2}
    for name, values in derived.items():
        channels.append(values)
        names.append(name)
    notes.append("leads III, aVR, aVL, aVF computed from I and II (the file stores 8 leads)")


CALIBRATION_MV = 1.0


def trim_calibration_pulse(signal_mv: np.ndarray, fs: float, notes: list[str]) -> np.ndarray:
    """Cut the 1 mV calibration pulse that Philips cardiographs append after the ECG.

    PageWriter exports (and their aECG conversions) hold 11 s: the ECG, then all leads at exactly
    +1 mV for 200 ms from 10.7 s, then zeros. Fed to a model or the quality gate it reads as a
    saturated, square-wave lead. Cut from the pulse's first sample when, in the last 1.5 s, at least
    three quarters of the leads sit at 1 mV (to two 5 uV steps) together for 40 ms or more: no
    recorded ECG does that.
    """
    n_leads, n = signal_mv.shape
    tail = max(0, n - int(1.5 * fs))
    together = (np.abs(signal_mv[:, tail:] - CALIBRATION_MV) <= 0.011).sum(axis=0) >= 0.75 * n_leads
    if not together.any():
        return signal_mv
    # runs of consecutive samples where the leads sit on the pulse
    edges = np.diff(np.concatenate([[0], together.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    long_runs = [s for s, e in zip(starts, ends) if e - s >= 0.04 * fs]
    if not long_runs:
        return signal_mv
    onset = tail + int(long_runs[0])
    notes.append(f"1 mV calibration pulse from {onset / fs:.2f} s to the end cut ({n - onset} samples)")
    return signal_mv[:, :onset]
