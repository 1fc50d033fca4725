"""The signal-quality gate: what is wrong with a record, and whether it is too wrong to score.

``assess(record)`` gives a ``Quality``: flags, each a warning or a failure. The same gate serves
``melp prepare`` (reject or flag per ``--quality``, a ``quality`` column in the index) and the
single-record commands (``classify``/``report`` refuse a failing record unless ``--force``), so that
random bytes, an all-zero or a saturated record never receive a confident diagnosis silently.

QRS presence uses neurokit2's ``ecg_quality`` (Zhao & Zhang 2018: kurtosis, QRS-band power and
baseline SQIs): the record fails when no usable lead is at least "Barely acceptable". On 70 real
LUDB/CinC records no record failed; white noise and random bytes fail on every lead.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from melp.data.leads import CANONICAL_LEADS

MIN_SECONDS = 5.0
NEAR_FLAT_MV = 0.02  # peak-to-peak below this carries no ECG
SATURATED_FRACTION = 0.02  # this share of a lead's samples sitting on its extreme value: clipped
MAX_SATURATED_LEADS = 3  # more clipped leads than this: the record fails
IMPLAUSIBLE_MV = 10.0
IMPLAUSIBLE_FRACTION = 0.01  # "sustained": this share of samples beyond IMPLAUSIBLE_MV from the median
QRS_ORDER = ("II", "V5", "I", "V2", "V4", "aVF", "V3", "V6", "III", "V1", "aVR", "aVL")  # likeliest first
POLICIES = ("reject", "flag", "off")


@dataclass(frozen=True)
class Flag:
    name: str
    detail: str
    fails: bool

    def __str__(self) -> str:
        return f"{self.name} ({self.detail})"


@dataclass
class Quality:
    flags: list[Flag] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not any(f.fails for f in self.flags)

    def failures(self) -> str:
        return "; ".join(str(f) for f in self.flags if f.fails)

    def warnings(self) -> str:
        return "; ".join(str(f) for f in self.flags if not f.fails)

    def label(self) -> str:
        """One word and the flag names, for the index's ``quality`` column: ok / warn: ... / fail: ..."""
        if not self.flags:
            return "ok"
        return f"{'fail' if not self.passed else 'warn'}: {', '.join(f.name for f in self.flags)}"


def _leads(mask: np.ndarray) -> str:
    return ",".join(lead for lead, m in zip(CANONICAL_LEADS, mask) if m)


def has_qrs(signal: np.ndarray, fs: float, usable: np.ndarray) -> bool:
    """Whether any usable lead has acceptable ECG quality (checked likeliest lead first)."""
    import neurokit2 as nk

    for lead in QRS_ORDER:
        k = CANONICAL_LEADS.index(lead)
        if not usable[k]:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                verdict = nk.ecg_quality(signal[k], sampling_rate=int(round(fs)), method="zhao2018")
            except (ValueError, IndexError, ZeroDivisionError):  # too few peaks to judge: not a QRS lead
                continue
        if verdict != "Unacceptable":
            return True
    return False


def assess(record, detect_qrs: bool = True) -> Quality:
    """The flags of a ``Record`` (as ``read_record`` returns it, with ``allow_missing_leads`` or not)."""
    signal, fs, meta = record.signal, record.fs, record.meta
    flags = []
    if meta.get("checksum_mismatch"):
        flags.append(Flag("checksum", f"leads {','.join(meta['checksum_mismatch'])} differ from the header's "
                                      "checksums: corrupted samples", True))
    seconds = signal.shape[1] / fs
    if seconds < MIN_SECONDS:
        flags.append(Flag("too_short", f"{seconds:.1f} s < {MIN_SECONDS:g} s", True))
    missing = np.array([lead in meta.get("missing_leads", []) for lead in CANONICAL_LEADS])
    nan = list(meta.get("nan_leads", []))
    if nan:
        flags.append(Flag("all_nan", f"leads {','.join(nan)}", len(nan) == len(CANONICAL_LEADS)))
    if missing.any():
        flags.append(Flag("missing_leads", f"leads {_leads(missing)} zero-filled", bool(missing.all())))
    ptp = np.ptp(signal, axis=1) if signal.shape[1] else np.zeros(len(signal))
    flat = (ptp < NEAR_FLAT_MV) & ~missing
    if flat.any():
        flags.append(Flag("flat", f"leads {_leads(flat)} peak-to-peak < {NEAR_FLAT_MV:g} mV",
                          bool((flat | missing).all())))
    live = ~flat & ~missing
    if live.any():
        hi, lo = signal.max(axis=1, keepdims=True), signal.min(axis=1, keepdims=True)
        at_edge = ((signal == hi) | (signal == lo)).mean(axis=1)
        clipped = live & (at_edge > SATURATED_FRACTION)
        if clipped.any():
            flags.append(Flag("saturated", f"leads {_leads(clipped)} sit on their extreme value",
                              int(clipped.sum()) > MAX_SATURATED_LEADS))
        far = (np.abs(signal - np.median(signal, axis=1, keepdims=True)) > IMPLAUSIBLE_MV).mean(axis=1)
        huge = live & (far > IMPLAUSIBLE_FRACTION)
        if huge.any():
            flags.append(Flag("amplitude", f"leads {_leads(huge)} beyond {IMPLAUSIBLE_MV:g} mV", True))
        if detect_qrs and seconds >= MIN_SECONDS and not has_qrs(signal, fs, live):
            flags.append(Flag("no_qrs", "no lead shows acceptable QRS complexes (neurokit2 zhao2018)", True))
    return Quality(flags)
