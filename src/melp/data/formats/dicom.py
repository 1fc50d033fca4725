"""DICOM waveforms (12-lead ECG, general ECG and ambulatory ECG Waveform Storage) through pydicom.

The multiplex group read is the one with the most channels that are leads, preferring a label
without "MEDIAN" and then the most samples (a 12-lead file usually holds a RHYTHM and a MEDIAN BEAT
group). ``Dataset.waveform_array`` applies each channel's sensitivity, correction factor and
baseline, so its values are in the ``ChannelSensitivityUnitsSequence`` unit (uV or mV), converted
here to mV. Lead names come from ``ChannelSourceSequence`` ("Lead I (Einthoven)", "Lead aVR").
Statements: the ``WaveformAnnotationSequence`` items with free text (``UnformattedTextValue``);
age and sex from ``PatientAge`` ("042Y") and ``PatientSex``.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from melp.data.formats.common import lead_label, parse_sex, unit_factor
from melp.data.leads import canonical_lead_name
from melp.data.readers import Record, RecordError, _empty_meta, _to_record


def _channel_name(channel) -> str:
    source = channel.get("ChannelSourceSequence")
    if not source:
        return channel.get("ChannelLabel", "") or "?"
    item = source[0]
    for value in (item.get("CodeMeaning"), item.get("CodeValue"), channel.get("ChannelLabel")):
        if value and canonical_lead_name(lead_label(value)):
            return lead_label(value)
    return lead_label(item.get("CodeMeaning") or item.get("CodeValue") or "?")


def _channel_unit(path, channel) -> float:
    units = channel.get("ChannelSensitivityUnitsSequence")
    if not units or "ChannelSensitivity" not in channel:
        raise RecordError(path, f"channel {_channel_name(channel)} has no sensitivity or units")
    return unit_factor(path, units[0].get("CodeValue", ""))


def _choose_group(path, ds) -> int:
    def rank(index):
        group = ds.WaveformSequence[index]
        names = [_channel_name(c) for c in group.get("ChannelDefinitionSequence", [])]
        leads = sum(canonical_lead_name(n) is not None for n in names)
        label = str(group.get("MultiplexGroupLabel", "")).upper()
        return leads, "MEDIAN" not in label, int(group.get("NumberOfWaveformSamples", 0))

    return max(range(len(ds.WaveformSequence)), key=rank)


def _age(value) -> float | None:
    """DICOM age string nnnD/W/M/Y -> years."""
    text = str(value or "").strip().upper()
    if len(text) < 2 or not text[:-1].isdigit():
        return None
    per_year = {"Y": 1, "M": 12, "W": 52.1775, "D": 365.25}.get(text[-1])
    return round(int(text[:-1]) / per_year, 2) if per_year else None


def read_dicom(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    import pydicom

    path = Path(path)
    with open(path, "rb") as f:
        marked = f.read(132)[128:132] == b"DICM"
    try:
        ds = pydicom.dcmread(path, force=not marked)  # force: a data set written without the preamble
    except Exception as err:  # pydicom raises InvalidDicomError, EOFError, struct.error... on damage
        raise RecordError(path, f"cannot read DICOM ({type(err).__name__}: {err})") from None
    try:
        return _from_dataset(path, ds, allow_missing_leads, strict)
    except RecordError:
        raise
    except Exception as err:  # pydicom parses sequences when they are first read: damage shows up here
        raise RecordError(path, f"damaged DICOM ({type(err).__name__}: {err})") from None


def _from_dataset(path: Path, ds, allow_missing_leads: bool, strict: bool) -> Record:
    if "WaveformSequence" not in ds or not ds.WaveformSequence:
        sop = getattr(ds.get("SOPClassUID"), "name", ds.get("SOPClassUID", "?"))
        raise RecordError(path, f"DICOM without waveforms (SOP class {sop})")
    index = _choose_group(path, ds)
    group = ds.WaveformSequence[index]
    channels = list(group.get("ChannelDefinitionSequence", []))
    if not channels:
        raise RecordError(path, f"waveform group {index} has no channel definitions")
    try:
        fs = float(group.SamplingFrequency)
        data = ds.waveform_array(index)  # (samples, channels), sensitivity and baseline applied
    except Exception as err:  # wrong byte count, unsupported bits allocated...
        raise RecordError(path, f"cannot decode waveform group {index} ({type(err).__name__}: {err})") from None
    if data.ndim != 2 or data.shape[1] != len(channels):
        raise RecordError(path, f"waveform group {index} decodes to shape {data.shape}, "
                                f"{len(channels)} channels declared")
    factors = np.array([_channel_unit(path, c) for c in channels])
    meta = _empty_meta()
    meta["age"] = _age(ds.get("PatientAge"))
    meta["sex"] = parse_sex(ds.get("PatientSex"))
    meta["patient_id"] = str(ds.get("PatientID", "") or "").strip() or None
    meta["statements"] = list(dict.fromkeys(
        " ".join(str(a.UnformattedTextValue).split())
        for a in ds.get("WaveformAnnotationSequence", [])
        if a.get("UnformattedTextValue") and str(a.UnformattedTextValue).strip()))
    label = str(group.get("MultiplexGroupLabel", "")) or f"group {index}"
    meta["format"] = f"DICOM waveform ({label})"
    if "MEDIAN" in label.upper():
        meta["notes"].append(f"no rhythm waveform: multiplex group {label!r} was read")
    signal = (np.asarray(data, dtype=np.float64) * factors).T
    return _to_record(path, signal, [_channel_name(c) for c in channels], fs, meta, allow_missing_leads, strict)
