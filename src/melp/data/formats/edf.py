"""EDF and EDF+ (and 24-bit BDF) through ``edfio``.

``edfio`` was chosen over ``pyedflib``: it is pure Python on numpy (no compiled extension to
build where no wheel exists), actively released, reads EDF+C/EDF+D and BDF, and returns physical
values directly. Signal labels become lead names ("ECG I", "EKG V1", "I"); signals whose label
is no lead (respiration, EEG, ...) are skipped and listed in ``meta["notes"]``; EDF+ annotations
are ignored. Each lead's physical dimension (uV, mV, V) is converted to mV, and all leads must
share one sampling rate.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from melp.data.formats.common import lead_label, parse_sex, unit_factor
from melp.data.leads import canonical_lead_name, extra_channel_name
from melp.data.readers import Record, RecordError, _empty_meta, _to_record


def _check_size(path: Path, bdf: bool) -> None:
    """A file shorter than its header's data records is truncated: edfio would drop the partial
    records silently (and report no samples when none is whole)."""
    with open(path, "rb") as f:
        head = f.read(256)
        try:
            n_signals = int(head[252:256].decode("ascii"))
            n_records = int(head[236:244].decode("ascii"))
            per_record = f.read(256 * n_signals)[216 * n_signals:224 * n_signals]
            samples = sum(int(per_record[8 * k:8 * k + 8].decode("ascii")) for k in range(n_signals))
        except (UnicodeDecodeError, ValueError):
            return  # edfio names what is wrong with the header
    needed = 256 * (n_signals + 1) + n_records * samples * (3 if bdf else 2)
    size = path.stat().st_size
    if n_records > 0 and size < needed:
        raise RecordError(path, f"truncated: the header declares {n_records} data records ({needed} bytes), "
                                f"the file holds {size}")


def read_edf(path, *, allow_missing_leads: bool = False, strict: bool = False) -> Record:
    import edfio

    path = Path(path)
    with open(path, "rb") as f:
        bdf = f.read(1) == b"\xff"
    _check_size(path, bdf)
    try:
        edf = (edfio.read_bdf if bdf else edfio.read_edf)(path)
        signals = list(edf.signals)
    except Exception as err:  # edfio raises ValueError, EOFError... on a damaged header or data
        raise RecordError(path, f"cannot read EDF ({type(err).__name__}: {err})") from None
    meta = _empty_meta()
    names, chosen, skipped = [], [], []
    for signal in signals:
        name = lead_label(signal.label)
        if canonical_lead_name(name) or extra_channel_name(name):
            names.append(name)
            chosen.append(signal)
        else:
            skipped.append(signal.label)
    if skipped:
        meta["notes"].append(f"signals that are not ECG leads skipped: {skipped}")
    if not chosen:
        raise RecordError(path, f"no ECG lead among the EDF signals {[s.label for s in signals]}")
    rates = {name: float(s.sampling_frequency) for name, s in zip(names, chosen)}
    if len(set(rates.values())) > 1:
        raise RecordError(path, f"leads are sampled at different rates {rates}: melp needs one rate for all")
    try:
        channels = np.stack([np.asarray(s.data, dtype=np.float64) * unit_factor(path, s.physical_dimension)
                             for s in chosen])
    except RecordError:
        raise
    except Exception as err:  # edfio reads the samples lazily: a damaged data block fails here
        raise RecordError(path, f"cannot read the EDF samples ({type(err).__name__}: {err})") from None
    try:
        patient = edf.patient
        meta["sex"] = parse_sex(patient.sex)
    except Exception:  # a plain-EDF patient field that is not EDF+ structured: no sex
        pass
    meta["format"] = "BDF" if bdf else "EDF"
    return _to_record(path, channels, names, next(iter(rates.values())), meta, allow_missing_leads, strict)
