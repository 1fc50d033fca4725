"""The demo's outputs besides the numbers: the plots and the summary table.

- ``plots/training_curves.png``: the stage-2 loss terms per step and the validation metrics per epoch,
  read back from the run's CSV log;
- ``plots/roc_<task>.png``: copies of the zero-shot ROC curves the evaluation wrote (``auroc_<task>.png``,
  its per-class AUROC bars, for a task with too many classes for ROC curves, e.g. LUDB);
- ``plots/example_12lead.png``: one held-out PTB-XL-layout ECG with its reference and generated report.
"""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def training_curves(run_dir: Path, path: Path) -> Path | None:
    """Loss terms (train, per logged step) and validation loss/recall (per epoch)."""
    from melp.train.pretrain import read_metrics

    m = read_metrics(run_dir)
    if m.empty:
        return None
    plt = _pyplot()
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for col in ("train/loss", "train/global", "train/caption", "train/local"):
        if col in m:
            rows = m.dropna(subset=[col])
            ax1.plot(rows["step"], rows[col], label=col.split("/")[1], lw=1)
    ax1.set(xlabel="optimiser step", ylabel="loss", title="stage 2: training losses")
    ax1.legend(fontsize=8)
    for col in ("val/loss", "val/global"):
        if col in m:
            rows = m.dropna(subset=[col])
            ax2.plot(rows["step"], rows[col], "o-", label=col, lw=1)
    ax2.set(xlabel="optimiser step", ylabel="held-out loss", title="validation (held-out pretraining pairs)")
    right = ax2.twinx()
    for col in ("val/ecg2report_r1", "val/ecg2report_r10"):
        if col in m:
            rows = m.dropna(subset=[col])
            right.plot(rows["step"], rows[col], "s--", label=col, lw=1)
    right.set(ylabel="recall", ylim=(0, 1.05))
    lines = ax2.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = ax2.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    ax2.legend(lines, labels, fontsize=8, loc="center right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def example_ecg(model, cache_dir: Path, path: Path) -> Path:
    """A held-out ECG on paper-style grid (the simulator's plot), titled with its reference and
    generated reports."""
    from melp.data.cache import ECGCache
    from melp.data.leads import CANONICAL_LEADS
    from melp.synth.plot import plot_12lead

    cache = ECGCache(cache_dir)
    index = cache.index.reset_index(drop=True)
    test = np.flatnonzero(index["split"].to_numpy() == "test")
    i = int(test[0]) if len(test) else 0
    signal, fs = cache.signal(i), cache.preprocess.fs
    generated = model.generate(signal[None], fs=fs)[0]
    reference = str(index["report"].iloc[i]) if "report" in index else ""
    fig = plot_12lead(signal, fs, list(CANONICAL_LEADS),
                      title=f"record {index['record_id'].iloc[i]} | {fs:g} Hz (as the model reads it)\n"
                            f"reference: {reference}\ngenerated: {generated}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")  # the wrapped title stays inside the image
    _pyplot().close(fig)
    return path


def plots(out: Path, run_dir: Path, model, caches: dict) -> list[Path]:
    out = Path(out)
    written = [training_curves(run_dir, out / "plots" / "training_curves.png")]
    for folder in sorted((out / "eval").glob("zeroshot-*")):
        task = folder.name.removeprefix("zeroshot-")
        for source, name in (("roc.png", f"roc_{task}.png"), ("auroc_bars.png", f"auroc_{task}.png")):
            if (folder / source).is_file():  # the ROC curves when there are any, else the bars
                shutil.copyfile(folder / source, out / "plots" / name)
                written.append(out / "plots" / name)
                break
    written.append(example_ecg(model, caches["ptbxl"], out / "plots" / "example_12lead.png"))
    return [p for p in written if p is not None]


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}"


LUDB_MIN_POSITIVES = 5  # below this a class's AUROC is mostly chance; all are in eval/zeroshot-ludb


def _ludb_classes(per_class: dict) -> list[str]:
    """The real-LUDB zero-shot table for classes with enough positive records, most frequent first."""
    shown = sorted((c for c in per_class.items() if c[1]["n_pos"] >= LUDB_MIN_POSITIVES),
                   key=lambda c: (-c[1]["n_pos"], c[0]))
    if not shown:
        return []
    lines = ["", f"Real LUDB, zero-shot AUROC per class with >= {LUDB_MIN_POSITIVES} positive records "
                 f"({len(shown)} of {len(per_class)}; every class in eval/zeroshot-ludb/results.md):", "",
             "| class | positives | AUROC (%) |", "|---|---|---|"]
    return lines + [f"| {name} | {c['n_pos']} | {_pct(c['auroc'])} |" for name, c in shown]


def summary_markdown(results: dict) -> str:
    """The table printed at the end of the demo and written as results.md."""
    zs, probe, ret = results.get("zeroshot", {}), results.get("probe", {}), results.get("retrieval", {})
    rows = [("zero-shot macro AUROC, simulated PTB-XL super (test folds)", _pct(zs.get("macro_auroc")), ">= 90")]
    rows += [(f"zero-shot macro AUROC, simulated {k}", _pct(v), "")
             for k, v in zs.items() if k not in ("macro_auroc", "ptbxl-super")]
    rows += [(f"linear probe macro AUROC, PTB-XL super, {float(k) * 100:g}% of train", _pct(v),
              ">= 95" if float(k) == 1.0 else "") for k, v in probe.items()]
    if ret:
        rows.append((f"ECG->report recall@10, {ret.get('n_pairs')} held-out pairs (chance {_pct(ret.get('chance_r10'))})",
                     _pct(ret.get("ecg_to_report_r10")), "well above chance"))
        rows.append(("ECG->report recall@1", _pct(ret.get("ecg_to_report_r1")), ""))
    if "ludb" in results:
        rows.append((f"zero-shot macro AUROC, real LUDB ({results['ludb'].get('n')} records)",
                     _pct(results["ludb"]["zeroshot_macro_auroc"]), ""))
    lines = ["# melp demo results", "",
             f"Wall time: {results.get('elapsed_seconds', 0) / 60:.1f} min "
             f"(steps: {', '.join(f'{k} {v:.0f} s' for k, v in results.get('step_seconds', {}).items())}).",
             f"Model folder: `{results.get('model_dir')}`", "",
             "| measure | value (%) | target |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "Plots: plots/training_curves.png, plots/roc_*.png (auroc_*.png for many classes), "
                  "plots/example_12lead.png"]
    lines += _ludb_classes(results.get("ludb", {}).get("per_class", {}))
    return "\n".join(lines) + "\n"
