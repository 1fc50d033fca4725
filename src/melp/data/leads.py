"""Canonical 12-lead names and reordering by name.

Files store leads in many orders and spellings (MIMIC-IV-ECG writes aVF before aVL, LUDB writes
``avr``, CODE-15 documents ``DI``). Everything in melp uses ``CANONICAL_LEADS`` and maps a
file's names onto it by *name*, never by position.
"""
from __future__ import annotations

CANONICAL_LEADS = ("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")

# Channels that may sit next to the 12 leads in a record and are kept apart, not rejected:
# the Frank orthogonal leads of the PTB database (its ``S*`` records have 15 channels).
EXTRA_CHANNELS = ("vx", "vy", "vz")

_CANONICAL_BY_KEY = {name.lower(): name for name in CANONICAL_LEADS}
# Unambiguous alternative spellings of limb leads (Brazilian/Spanish "derivación" names).
_CANONICAL_BY_KEY.update({"di": "I", "dii": "II", "diii": "III"})
_EXTRA_BY_KEY = {name.lower(): name for name in EXTRA_CHANNELS}


def _key(name: str) -> str:
    return name.strip().lower()


def canonical_lead_name(name: str) -> str | None:
    """The canonical spelling of one of the 12 leads (``"AVR"`` -> ``"aVR"``), or None."""
    return _CANONICAL_BY_KEY.get(_key(name))


def extra_channel_name(name: str) -> str | None:
    """The normalised name of a known extra channel (``"VX"`` -> ``"vx"``), or None."""
    return _EXTRA_BY_KEY.get(_key(name))


class LeadNameError(ValueError):
    """A file's channel names cannot be mapped onto the 12 leads."""


def match_leads(names: list[str] | tuple[str, ...]) -> tuple[list[int | None], dict[str, int]]:
    """Map a file's channel names onto the canonical order.

    Returns ``(order, extra)``: ``order[k]`` is the file's channel index of ``CANONICAL_LEADS[k]``
    (None when the file lacks that lead) and ``extra`` maps known extra channels to their index.
    Raises ``LeadNameError`` for unknown or repeated names (the caller adds the file name).
    """
    order: list[int | None] = [None] * len(CANONICAL_LEADS)
    position = {name: k for k, name in enumerate(CANONICAL_LEADS)}
    extra: dict[str, int] = {}
    unknown: list[str] = []
    for index, name in enumerate(names):
        lead = canonical_lead_name(name)
        if lead is not None:
            k = position[lead]
            if order[k] is not None:
                raise LeadNameError(f"lead {lead} appears twice (channels {order[k]} and {index}: "
                                    f"{names[order[k]]!r}, {name!r})")
            order[k] = index
            continue
        other = extra_channel_name(name)
        if other is not None:
            if other in extra:
                raise LeadNameError(f"channel {other} appears twice")
            extra[other] = index
            continue
        unknown.append(name)
    if unknown:
        raise LeadNameError(f"unknown lead names {unknown} (expected {', '.join(CANONICAL_LEADS)}"
                            f" in any case, or extra channels {', '.join(EXTRA_CHANNELS)})")
    return order, extra
