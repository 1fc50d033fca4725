"""Writing evaluation results: ``results.json``, ``results.md``, score tables and plots.

Every command writes into its ``--out`` folder through these helpers so that all results look
alike. Scores are saved per record (``scores*.csv``: record_id, ``label:<class>``,
``score:<class>``) so that any number in a table can be recomputed independently.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.floating, float)):
        return None if math.isnan(float(x)) else float(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, Path):
        return str(x)
    return x


def write_json(path: str | Path, obj: dict) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(_jsonable(obj), indent=2) + "\n")
    return path


def fmt(x, scale: float = 100.0, digits: int = 2) -> str:
    """A metric for a table: 0.8123 -> '81.23'; None/NaN -> '-'."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x * scale:.{digits}f}"


def markdown_table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def summary_markdown(title: str, summary: dict) -> str:
    """A per-class table of one ``classification_summary``, macro line first."""
    lo, hi = summary.get("macro_auroc_ci", [None, None])
    text = [f"## {title}\n",
            f"Records: {summary['n']}; macro AUROC over {summary['n_scored_classes']} scored classes: "
            f"**{fmt(summary['macro_auroc'])}** (95% CI {fmt(lo)}-{fmt(hi)}); "
            f"macro max-F1 {fmt(summary['macro_max_f1'])}.\n"]
    rows = [[c, v["n_pos"], fmt(v["auroc"]), fmt(v["max_f1"])] for c, v in summary["per_class"].items()]
    text.append(markdown_table(["class", "positives", "AUROC", "max-F1"], rows))
    if summary["skipped"]:
        text.append("Skipped (AUROC undefined): "
                    + "; ".join(f"{s['class']} ({s['reason']})" for s in summary["skipped"]) + "\n")
    return "\n".join(text)


def write_scores(path: str | Path, record_ids, classes: list[str], labels: np.ndarray,
                 scores: np.ndarray) -> Path:
    table = pd.DataFrame({"record_id": list(map(str, record_ids))})
    for c, name in enumerate(classes):
        table[f"label:{name}"] = np.asarray(labels)[:, c].astype(int)
    for c, name in enumerate(classes):
        table[f"score:{name}"] = np.asarray(scores)[:, c]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)
    return path


def read_scores(path: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Inverse of ``write_scores``: (record_ids, classes, labels, scores)."""
    table = pd.read_csv(path, dtype={"record_id": str})
    classes = [c[len("label:"):] for c in table.columns if c.startswith("label:")]
    labels = table[[f"label:{c}" for c in classes]].to_numpy()
    scores = table[[f"score:{c}" for c in classes]].to_numpy()
    return table["record_id"].tolist(), classes, labels, scores


def plot_classification(out_dir: str | Path, labels: np.ndarray, scores: np.ndarray, classes: list[str],
                        summary: dict, title: str, prefix: str = "") -> list[Path]:
    """ROC curves (scored classes) and a per-class AUROC bar chart; returns the files written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_curve

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored = [c for c, name in enumerate(classes) if summary["per_class"][name]["auroc"] is not None]

    fig, ax = plt.subplots(figsize=(6, 6))
    for c in scored:
        fpr, tpr, _ = roc_curve(labels[:, c], scores[:, c])
        ax.plot(fpr, tpr, lw=1, label=f"{classes[c]} ({summary['per_class'][classes[c]]['auroc']:.2f})")
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}")
    if scored:
        ax.legend(fontsize=6, loc="lower right", ncol=1 + len(scored) // 20)
    roc_path = out_dir / f"{prefix}roc.png"
    fig.tight_layout()
    fig.savefig(roc_path, dpi=110)
    plt.close(fig)

    names = [classes[c] for c in scored]
    values = [summary["per_class"][n]["auroc"] for n in names]
    fig, ax = plt.subplots(figsize=(max(4, 0.35 * len(names) + 1.5), 4))
    ax.bar(range(len(names)), values, color="tab:blue")
    ax.axhline(0.5, color="k", ls="--", lw=0.8)
    ax.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=7)
    ax.set(ylim=(0, 1), ylabel="AUROC", title=f"per-class AUROC: {title}")
    bars_path = out_dir / f"{prefix}auroc_bars.png"
    fig.tight_layout()
    fig.savefig(bars_path, dpi=110)
    plt.close(fig)
    return [roc_path, bars_path]


def plot_bars(path: str | Path, groups: dict[str, dict[str, float]], ylabel: str, title: str) -> Path:
    """Grouped bars: {group: {bar: value}} (e.g. retrieval direction -> R@k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(groups)
    bars = list(dict.fromkeys(b for g in groups.values() for b in g))
    width = 0.8 / max(1, len(bars))
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for j, bar in enumerate(bars):
        ax.bar(np.arange(len(names)) + j * width, [groups[g].get(bar, np.nan) for g in names], width, label=bar)
    ax.set_xticks(np.arange(len(names)) + width * (len(bars) - 1) / 2, names)
    ax.set(ylim=(0, 1), ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_histogram(path: str | Path, values, xlabel: str, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.asarray(values, dtype=float), bins=20, range=(0, 1), color="tab:blue")
    ax.set(xlabel=xlabel, ylabel="records", title=title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
