"""Report text: the MIMIC-IV-ECG cleaning rules (DESIGN 2.1, and the authors' preprocessing).

Sentences are cut by the text encoder, after each '.' token (melp.models.text_encoder).
"""
from __future__ import annotations

import re
from collections.abc import Iterable

MIN_WORDS = 4  # MIMIC reports shorter than this carry no usable text

_WHITESPACE = re.compile(r"\s+")
_STARS = re.compile(r"\*{3,}")  # machine placeholders such as "*** report unconfirmed ***"
_EKG = re.compile(r"ekg")


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and value != value:  # NaN from pandas
        return True
    return False


def clean_report(parts: Iterable) -> str:
    """Join non-empty report statements with ". " and normalise them.

    Lowercased, "ekg" -> "ecg", runs of "***" removed, whitespace collapsed, and a final period, as
    in the authors' preprocessing (their beat-level loss counts a sentence only when a '.' ends it).
    Statements that already end in a period are not given a second one.
    """
    statements = []
    for part in parts:
        if _is_missing(part):
            continue
        text = _STARS.sub(" ", str(part).lower())
        text = _EKG.sub("ecg", text)
        text = _WHITESPACE.sub(" ", text).strip().rstrip(".").strip()
        if text:
            statements.append(text)
    return ". ".join(statements) + "." if statements else ""


def word_count(text: str) -> int:
    return len(text.split())


def short_report_reason(report: str) -> str | None:
    """The reject reason of a report too short to train on (every adapter's rule), or None."""
    return f"report shorter than {MIN_WORDS} words" if word_count(report) < MIN_WORDS else None
