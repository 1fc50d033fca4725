"""Classification metrics for multi-label ECG tasks.

AUROC is computed per class and macro-averaged over the classes that can be scored: a class with
no positive (or no negative) record has no AUROC; it is *reported* in ``skipped`` with the reason,
never silently dropped. Max-F1 is the best F1 over all thresholds. The 95% confidence interval of
the macro AUROC comes from a record-level bootstrap (vectorised with rank statistics, so a thousand
resamples take well under a second).
"""
from __future__ import annotations

import numpy as np


def _check(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_true = np.asarray(y_true, dtype=np.float64)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim == 1:
        y_true, y_score = y_true[:, None], y_score[:, None]
    if y_true.shape != y_score.shape:
        raise ValueError(f"labels {y_true.shape} and scores {y_score.shape} differ in shape")
    if not np.isfinite(y_score).all():
        raise ValueError("scores contain NaN or infinite values")
    return y_true, y_score


def rank_auroc(y_true: np.ndarray, y_score: np.ndarray) -> np.ndarray:
    """AUROC along the last axis via the Mann-Whitney U statistic (ties get half credit).

    ``y_true`` and ``y_score`` have the same shape (..., N); returns (...) with NaN where a row
    has no positive or no negative.
    """
    from scipy.stats import rankdata  # scipy and sklearn load on first use, not with the CLI's --help

    y_true = np.asarray(y_true, dtype=bool)
    ranks = rankdata(y_score, axis=-1)  # average ranks for ties
    n_pos = y_true.sum(-1)
    n_neg = y_true.shape[-1] - n_pos
    u = (ranks * y_true).sum(-1) - n_pos * (n_pos + 1) / 2.0
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = u / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def per_class_auroc(y_true, y_score) -> np.ndarray:
    """(N, C) labels and scores -> (C,) AUROC, NaN for classes that cannot be scored."""
    y_true, y_score = _check(y_true, y_score)
    return rank_auroc(y_true.T, y_score.T)


def max_f1(y_true, y_score) -> np.ndarray:
    """(N, C) -> (C,) the best F1 over all thresholds; NaN for classes without positives."""
    from sklearn.metrics import precision_recall_curve

    y_true, y_score = _check(y_true, y_score)
    out = np.full(y_true.shape[1], np.nan)
    for c in range(y_true.shape[1]):
        if y_true[:, c].sum() == 0:
            continue
        precision, recall, _ = precision_recall_curve(y_true[:, c], y_score[:, c])
        with np.errstate(invalid="ignore", divide="ignore"):
            f1 = 2 * precision * recall / (precision + recall)
        out[c] = np.nanmax(f1)
    return out


def bootstrap_macro_auroc(y_true, y_score, n_boot: int = 1000, seed: int = 0, level: float = 0.95,
                          chunk: int = 100) -> tuple[float, float]:
    """Percentile bootstrap CI of the macro AUROC, resampling records with replacement.

    In each resample the macro average is taken over the classes scorable *in that resample*.
    Returns (nan, nan) when no resample has a scorable class.
    """
    y_true, y_score = _check(y_true, y_score)
    n = len(y_true)
    rng = np.random.default_rng(seed)
    macros = []
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, n, size=(min(chunk, n_boot - start), n))  # (b, n)
        t = y_true[idx].transpose(0, 2, 1)  # (b, C, n)
        s = y_score[idx].transpose(0, 2, 1)
        auc = rank_auroc(t, s)  # (b, C)
        with np.errstate(invalid="ignore"):
            valid = ~np.isnan(auc).all(1)
            macros.append(np.nanmean(np.where(valid[:, None], auc, 0.0), axis=1)[valid])
    macros = np.concatenate(macros) if macros else np.array([])
    if macros.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - level) / 2
    return float(np.quantile(macros, alpha)), float(np.quantile(macros, 1 - alpha))


def classification_summary(y_true, y_score, classes: list[str], n_boot: int = 1000,
                           seed: int = 0) -> dict:
    """Everything a results table needs, JSON-ready.

    Keys: ``n`` (records), ``macro_auroc``, ``macro_auroc_ci`` ([lo, hi]), ``macro_max_f1``,
    ``per_class`` (class -> {auroc, max_f1, n_pos}; auroc is None when skipped),
    ``skipped`` (list of {class, reason}), ``n_scored_classes``.
    """
    y_true, y_score = _check(y_true, y_score)
    if len(classes) != y_true.shape[1]:
        raise ValueError(f"{len(classes)} class names for {y_true.shape[1]} label columns")
    auc = per_class_auroc(y_true, y_score)
    f1 = max_f1(y_true, y_score)
    n_pos = y_true.sum(0).astype(int)
    per_class, skipped = {}, []
    for c, name in enumerate(classes):
        if n_pos[c] == 0:
            skipped.append({"class": name, "reason": "no positive record"})
        elif n_pos[c] == len(y_true):
            skipped.append({"class": name, "reason": "no negative record"})
        per_class[name] = {
            "auroc": None if np.isnan(auc[c]) else float(auc[c]),
            "max_f1": None if np.isnan(f1[c]) else float(f1[c]),
            "n_pos": int(n_pos[c]),
        }
    scored = ~np.isnan(auc)
    macro = float(auc[scored].mean()) if scored.any() else float("nan")
    ci = bootstrap_macro_auroc(y_true[:, scored], y_score[:, scored], n_boot=n_boot, seed=seed) \
        if scored.any() and n_boot > 0 else (float("nan"), float("nan"))
    f1_ok = ~np.isnan(f1) & scored
    return {
        "n": int(len(y_true)),
        "macro_auroc": macro,
        "macro_auroc_ci": list(ci),
        "macro_max_f1": float(f1[f1_ok].mean()) if f1_ok.any() else float("nan"),
        "n_scored_classes": int(scored.sum()),
        "per_class": per_class,
        "skipped": skipped,
    }


def mean_std(values) -> dict:
    """Mean and sample standard deviation (ddof=1; 0 for a single value) over seeds."""
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0, "n": int(v.size)}
