"""Machine-style reports from findings, worded from statements.yaml.

A report is a list of statements in MIMIC-IV-ECG manner: the rhythm first, then the other
findings, then the summary line (normal / borderline / abnormal ECG, the worst severity among the
findings). Like the machine statements of real archives, reports vary beyond the paraphrase drawn
for each finding: the other findings come in table order or shuffled, and a conduction or ectopy
finding is sometimes folded into the rhythm statement ("Sinus rhythm with 1st degree A-V block").
"""
from __future__ import annotations

import numpy as np

from melp.synth.findings import FINDINGS, RHYTHMS, table

SEVERITY_ORDER = ("normal", "borderline", "abnormal")
P_SHUFFLE = 0.3  # other findings in random order
P_WITH = 0.25  # the first conduction/ectopy finding joined to the rhythm with "with"
JOINABLE_KINDS = ("conduction", "ectopy")


def _lower_first(statement: str) -> str:
    """'First degree AV block' -> 'first degree AV block'; acronyms ('RBBB') stay as they are."""
    if len(statement) > 1 and statement[1].islower():
        return statement[0].lower() + statement[1:]
    return statement


def statements_for(names: list[str], rng: np.random.Generator) -> list[str]:
    """Statements of one ECG's findings (names in FINDINGS order)."""
    t = table()
    findings = t["findings"]
    rhythm = [x for x in names if x in RHYTHMS]
    others = [x for x in names if x not in RHYTHMS and x != "NORM"]
    if len(others) > 1 and rng.random() < P_SHUFFLE:
        others = [others[i] for i in rng.permutation(len(others))]
    worded = {name: findings[name]["statements"][rng.integers(len(findings[name]["statements"]))]
              for name in rhythm + others}
    out = [worded[name] for name in rhythm]
    joinable = [x for x in others if findings[x]["kind"] in JOINABLE_KINDS]
    if rhythm and joinable and rng.random() < P_WITH:
        out[0] = f"{out[0]} with {_lower_first(worded[joinable[0]])}"
        others = [x for x in others if x != joinable[0]]
    out += [worded[name] for name in others]
    worst = max((SEVERITY_ORDER.index(findings[x]["severity"]) for x in names), default=0)
    summary = t["summary"][SEVERITY_ORDER[worst]]
    out.append(summary[rng.integers(len(summary))])
    return out


def join(statements: list[str]) -> str:
    """One report string: 'Sinus rhythm. Left axis deviation. Abnormal ECG.'"""
    return " ".join(s.rstrip(".") + "." for s in statements)


def report_lists(multi_hot: np.ndarray, rng: np.random.Generator) -> list[list[str]]:
    return [statements_for([FINDINGS[j] for j in np.flatnonzero(row)], rng) for row in multi_hot]
