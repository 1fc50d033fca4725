"""Writing evaluation results: ``results.json``, ``results.md``, score tables and plots.

Every command writes into its ``--out`` folder through these helpers so that all results look
alike, and through ``output_folder`` so that the folder appears complete or not at all. Scores are saved per record (``scores*.csv``: record_id, ``label:<class>``,
``score:<class>``) so that any number in a table can be recomputed independently.
"""
from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from melp.atomic import atomic_folder
from melp.eval.descriptions import display_name

ROC_MAX_CLASSES = 20
RESULTS_FILE = "results.json"  # every command writes one: it marks a folder as an earlier output


@contextlib.contextmanager
def output_folder(out: str | Path) -> Iterator[Path]:
    """A hidden temporary sibling of ``out`` to write a command's results into, renamed to ``out`` once
    complete (melp.atomic): a failed or killed run leaves ``out`` as it was, never half-written. An
    existing ``out`` is replaced only when it is empty or an earlier output, never a folder of other files."""
    out = check_output(out)
    with atomic_folder(out, manifest=False) as tmp:
        yield tmp


def check_output(out: str | Path) -> Path:
    """``out`` as an absolute path ('.' has no name to make a sibling of), or FileExistsError when it is
    something ``output_folder`` must not replace; commands call it first, before hours of work."""
    out = Path(out).absolute()
    if out.exists() and not (out.is_dir() and ((out / RESULTS_FILE).is_file() or not any(out.iterdir()))):
        raise FileExistsError(f"--out {out} exists and is not an earlier output (no {RESULTS_FILE}): "
                              "give a new folder, or remove it")
    return out


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
    rows = [[display_name(c), v["n_pos"], fmt(v["auroc"]), fmt(v["max_f1"])] for c, v in summary["per_class"].items()]
    text.append(markdown_table(["class", "positives", "AUROC", "max-F1"], rows))
    if summary["skipped"]:
        text.append("Skipped (AUROC undefined): "
                    + "; ".join(f"{s['class']} ({s['reason']})" for s in summary["skipped"]) + "\n")
    return "\n".join(text)


def write_scores(path: str | Path, record_ids, classes: list[str], labels: np.ndarray,
                 scores: np.ndarray) -> Path:
    labels, scores = np.asarray(labels), np.asarray(scores)
    columns = {"record_id": list(map(str, record_ids))}
    columns |= {f"label:{name}": labels[:, c].astype(int) for c, name in enumerate(classes)}
    columns |= {f"score:{name}": scores[:, c] for c, name in enumerate(classes)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    import pandas as pd  # on first use, like matplotlib: the CLI's --help stays light

    pd.DataFrame(columns).to_csv(path, index=False)  # built at once: column inserts fragment a wide frame
    return path


def read_scores(path: str | Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Inverse of ``write_scores``: (record_ids, classes, labels, scores)."""
    import pandas as pd

    table = pd.read_csv(path, dtype={"record_id": str})
    classes = [c[len("label:"):] for c in table.columns if c.startswith("label:")]
    labels = table[[f"label:{c}" for c in classes]].to_numpy()
    scores = table[[f"score:{c}" for c in classes]].to_numpy()
    return table["record_id"].tolist(), classes, labels, scores


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def class_colours(n: int) -> list:
    """n <= 20 distinct colours: tab10's, then tab20's dark shades before its light ones."""
    import matplotlib

    if n <= 10:
        return [matplotlib.colormaps["tab10"](i) for i in range(n)]
    return [matplotlib.colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2))][:n]


def plot_classification(out_dir: str | Path, labels: np.ndarray, scores: np.ndarray, classes: list[str],
                        summary: dict, title: str, prefix: str = "") -> list[Path]:
    """Per-class AUROC bars and, for up to ROC_MAX_CLASSES scored classes, ROC curves (beyond that a
    ROC plot is a tangle of curves); returns the files written."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    scored = [c for c, name in enumerate(classes) if summary["per_class"][name]["auroc"] is not None]
    written = []
    if len(scored) <= ROC_MAX_CLASSES:
        written.append(_roc_curves(out_dir / f"{prefix}roc.png", labels, scores, classes, scored, summary, title))
    written.append(_auroc_bars(out_dir / f"{prefix}auroc_bars.png", [classes[c] for c in scored], summary, title))
    return written


def _roc_curves(path: Path, labels, scores, classes, scored, summary, title) -> Path:
    from sklearn.metrics import roc_curve

    plt = _pyplot()
    aurocs = {c: summary["per_class"][classes[c]]["auroc"] for c in scored}
    names = {c: f"{display_name(classes[c])}: {aurocs[c]:.2f}" for c in scored}
    legend_in = 0.055 * max(map(len, names.values()), default=0)  # about 0.055 in per character at 7 pt
    fig, ax = plt.subplots(figsize=(5.6 + legend_in, 5.5), layout="constrained")
    order = sorted(scored, key=aurocs.get, reverse=True)
    lines = []
    for c, colour in zip(order, class_colours(len(scored))):
        fpr, tpr, _ = roc_curve(labels[:, c], scores[:, c])
        lines += ax.plot(fpr, tpr, lw=1.2, color=colour)
    ax.plot([0, 1], [0, 1], "k--", lw=0.8)
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title=f"ROC: {title}",
           xlim=(0, 1), ylim=(0, 1.01))
    if scored:  # beside the axes, where it covers no curve; best class first. Labels passed explicitly:
        # matplotlib would drop a class named "_AVB" (a leading underscore hides an artist's label)
        fig.legend(lines, [names[c] for c in order], fontsize=7, loc="outside right upper", title="class: AUROC",
                   title_fontsize=7, frameon=False)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _auroc_bars(path: Path, names: list[str], summary: dict, title: str) -> Path:
    """Horizontal bars, best class on top, each labelled with its name and number of positives."""
    plt = _pyplot()
    per_class = summary["per_class"]
    names = sorted(names, key=lambda n: per_class[n]["auroc"], reverse=True)
    values = [per_class[n]["auroc"] for n in names]
    ticks = [f"{display_name(n)} (n={per_class[n]['n_pos']})" for n in names]
    fig, ax = plt.subplots(figsize=(9, 1.4 + 0.22 * max(len(names), 3)), layout="constrained")
    y = np.arange(len(names))
    ax.barh(y, values, color="tab:blue", height=0.7)
    for yi, v in zip(y, values):
        ax.text(v + 0.01, yi, f"{v:.2f}", va="center", fontsize=7, bbox=dict(fc="white", ec="none", pad=0.5))
    ax.axvline(0.5, color="k", ls="--", lw=0.8, label="chance")
    if summary.get("macro_auroc") is not None:
        ax.axvline(summary["macro_auroc"], color="tab:red", lw=1, label=f"macro {summary['macro_auroc']:.2f}")
    ax.set_yticks(y, ticks, fontsize=8)
    ax.set(xlim=(0, 1.08), xticks=np.linspace(0, 1, 6), ylim=(max(len(names), 1) - 0.5, -0.5), xlabel="AUROC",
           title=f"per-class AUROC: {title}")
    ax.legend(fontsize=7, loc="lower right")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_bars(path: str | Path, groups: dict[str, dict[str, float]], ylabel: str, title: str) -> Path:
    """Grouped bars: {group: {bar: value}} (e.g. retrieval direction -> R@k)."""
    plt = _pyplot()
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.hist(np.asarray(values, dtype=float), bins=20, range=(0, 1), color="tab:blue")
    ax.set(xlabel=xlabel, ylabel="records", title=title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
