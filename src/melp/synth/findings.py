"""The findings table (statements.yaml) and how each simulated ECG's set of findings is drawn.

Everything a finding means outside the signal lives in ``statements.yaml``: its statements and
paraphrases, its PTB-XL SCP codes and SNOMED codes, and how often it is drawn. This module loads
that file once and turns it into arrays the generator and the exporters use.
"""
from __future__ import annotations

from functools import lru_cache
from importlib import resources

import numpy as np
import yaml

RHYTHM_KINDS = ("rhythm",)


@lru_cache(maxsize=1)
def table() -> dict:
    """The parsed statements.yaml (findings, summary lines, scp_statements rows, sampling)."""
    text = resources.files("melp.synth").joinpath("statements.yaml").read_text()
    data = yaml.safe_load(text)
    _check(data)
    return data


def _check(data: dict) -> None:
    findings = data["findings"]
    sampling = data["sampling"]
    codes = data["scp_statements"]
    for name, f in findings.items():
        for key in ("kind", "severity", "statements", "scp", "snomed", "show"):
            if key not in f:
                raise ValueError(f"statements.yaml: finding {name} lacks {key!r}")
        if f["severity"] not in data["summary"]:
            raise ValueError(f"statements.yaml: finding {name} has unknown severity {f['severity']!r}")
        missing = [c for c in f["scp"] if c not in codes]
        if missing:
            raise ValueError(f"statements.yaml: finding {name} emits SCP codes {missing} missing from scp_statements")
    for name in [*sampling["rhythm"], *sampling["other"], *sampling["excludes"]]:
        if name not in findings:
            raise ValueError(f"statements.yaml: sampling names unknown finding {name!r}")


FINDINGS: tuple[str, ...] = tuple(table()["findings"])
INDEX = {name: i for i, name in enumerate(FINDINGS)}
RHYTHMS: tuple[str, ...] = tuple(n for n in FINDINGS if table()["findings"][n]["kind"] == "rhythm")


def _excluded_pairs() -> set[tuple[str, str]]:
    pairs = set()
    for a, others in table()["sampling"]["excludes"].items():
        for b in others:
            pairs |= {(a, b), (b, a)}
    return pairs


def compatible(names) -> bool:
    """True when no two of the named findings exclude each other (and there is one rhythm)."""
    names = list(names)
    pairs = _excluded_pairs()
    if sum(n in RHYTHMS for n in names) != 1:
        return False
    return not any((a, b) in pairs for a in names for b in names if a != b)


def sample_findings(n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw n sets of findings as a multi-hot bool array (n, len(FINDINGS)).

    A share p_normal is NORM + SR. The others get one rhythm (weighted) and independent
    findings in the order of ``sampling.other``, a finding being dropped when it clashes with
    one already taken; an ECG whose draw left it sinus rhythm and nothing else gets one more
    finding, so that NORM means exactly "normal ECG".
    """
    s = table()["sampling"]
    pairs = _excluded_pairs()
    rhythm_names = list(s["rhythm"])
    weights = np.array([s["rhythm"][r] for r in rhythm_names], dtype=float)
    other_names = list(s["other"])
    other_p = np.array([s["other"][o] for o in other_names])

    out = np.zeros((n, len(FINDINGS)), dtype=bool)
    normal = rng.random(n) < s["p_normal"]
    rhythm = rng.choice(len(rhythm_names), size=n, p=weights / weights.sum())
    draws = rng.random((n, len(other_names))) < other_p
    fallback = rng.choice(len(other_names), size=n, p=other_p / other_p.sum())
    # Set logic per ECG is a few dozen Python operations; cheap next to the signal itself.
    for i in range(n):
        if normal[i]:
            out[i, [INDEX["NORM"], INDEX["SR"]]] = True
            continue
        chosen = [rhythm_names[rhythm[i]]]
        candidates = [other_names[j] for j in np.flatnonzero(draws[i])]
        if chosen[0] == "SR" and not candidates:
            candidates = [other_names[fallback[i]]]
        for name in candidates:
            if not any((name, c) in pairs for c in chosen):
                chosen.append(name)
        if chosen == ["SR"]:  # the fallback clashed with nothing but could in principle be excluded
            chosen.append("NST")
        out[i, [INDEX[c] for c in chosen]] = True
    return out


def names_of(row: np.ndarray) -> list[str]:
    """Finding names of one multi-hot row, in FINDINGS order."""
    return [FINDINGS[j] for j in np.flatnonzero(row)]


def to_multi_hot(name_lists, n: int) -> np.ndarray:
    """Multi-hot (n, F) from a list of finding-name lists (one per ECG, or one list for all)."""
    if name_lists and isinstance(name_lists[0], str):
        name_lists = [list(name_lists)] * n
    if len(name_lists) != n:
        raise ValueError(f"findings: got {len(name_lists)} lists for {n} ECGs")
    out = np.zeros((n, len(FINDINGS)), dtype=bool)
    for i, names in enumerate(name_lists):
        names = list(names)
        unknown = [x for x in names if x not in INDEX]
        if unknown:
            raise ValueError(f"unknown finding(s) {unknown}; known: {', '.join(FINDINGS)}")
        if not any(x in RHYTHMS for x in names):
            names.append("SR")
        if not compatible(names):
            raise ValueError(f"findings {names} cannot occur together (see statements.yaml sampling.excludes)")
        if names == ["SR"] or sorted(names) == ["NORM", "SR"]:
            names = ["NORM", "SR"]
        elif "NORM" in names:
            raise ValueError(f"NORM means sinus rhythm and nothing else, got {names}")
        out[i, [INDEX[x] for x in names]] = True
    return out
