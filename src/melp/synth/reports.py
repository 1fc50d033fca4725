"""Machine-style reports from findings, worded from statements.yaml.

A report is a list of statements in MIMIC-IV-ECG manner: the rhythm first, then the other
findings in table order, then the summary line (normal / borderline / abnormal ECG, the worst
severity among the findings). Each statement is drawn from the finding's paraphrases.
"""
from __future__ import annotations

import numpy as np

from melp.synth.findings import FINDINGS, RHYTHMS, table

SEVERITY_ORDER = ("normal", "borderline", "abnormal")


def statements_for(names: list[str], rng: np.random.Generator) -> list[str]:
    """Statements of one ECG's findings (names in FINDINGS order)."""
    t = table()
    findings = t["findings"]
    rhythm = [x for x in names if x in RHYTHMS]
    others = [x for x in names if x not in RHYTHMS and x != "NORM"]
    out = []
    for name in rhythm + others:
        options = findings[name]["statements"]
        out.append(options[rng.integers(len(options))])
    worst = max((SEVERITY_ORDER.index(findings[x]["severity"]) for x in names), default=0)
    summary = t["summary"][SEVERITY_ORDER[worst]]
    out.append(summary[rng.integers(len(summary))])
    return out


def join(statements: list[str]) -> str:
    """One report string: 'Sinus rhythm. Left axis deviation. Abnormal ECG.'"""
    return " ".join(s.rstrip(".") + "." for s in statements)


def report_lists(multi_hot: np.ndarray, rng: np.random.Generator) -> list[list[str]]:
    return [statements_for([FINDINGS[j] for j in np.flatnonzero(row)], rng) for row in multi_hot]
