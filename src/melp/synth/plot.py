"""`melp plot RECORD -o FILE.png`: a 12-lead ECG on paper-style grid (3 x 4 + lead II rhythm strip).

Standard calibration: 25 mm/s, 10 mm/mV, small squares 1 mm (0.04 s, 0.1 mV), large 5 mm.
The title is the record's report when one can be found: MIMIC-IV-ECG machine_measurements.csv
or PTB-XL ptbxl_database.csv in a folder above the record, else the '#Dx' codes (named from the
simulator's table where known) or the header comments.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
MM_PER_S, MM_PER_MV = 25.0, 10.0
ROW_MM = 30.0  # vertical space per row


def add_arguments(parser) -> None:
    parser.add_argument("record", help="a record melp.read_record can read (path with or without extension)")
    parser.add_argument("-o", "--out", required=True, help="output image (.png, .pdf, .svg)")
    parser.add_argument("--dpi", type=int, default=100)
    parser.add_argument("--title", default=None, help="title instead of the record's report")


def run(args) -> int:
    import melp

    record = melp.read_record(args.record)
    title = args.title if args.title is not None else find_report(Path(args.record), record.meta)
    fig = plot_12lead(record.signal, record.fs, list(record.leads), title=title)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0


def _grid(ax, width_mm: float, height_mm: float) -> None:
    ax.set_xlim(0, width_mm)
    ax.set_ylim(0, height_mm)
    ax.set_xticks(np.arange(0, width_mm + 0.1, 5.0))
    ax.set_yticks(np.arange(0, height_mm + 0.1, 5.0))
    ax.set_xticks(np.arange(0, width_mm + 0.1, 1.0), minor=True)
    ax.set_yticks(np.arange(0, height_mm + 0.1, 1.0), minor=True)
    ax.grid(which="major", color="#f08080", linewidth=0.6)
    ax.grid(which="minor", color="#fbd5d5", linewidth=0.3)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_aspect("equal")
    for spine in ax.spines.values():
        spine.set_visible(False)


def _trace(ax, x0_mm: float, y0_mm: float, values: np.ndarray, fs: float, label: str | None) -> None:
    t_mm = x0_mm + np.arange(len(values)) / fs * MM_PER_S
    ax.plot(t_mm, y0_mm + (values - np.median(values)) * MM_PER_MV, color="black", linewidth=0.6)
    if label:
        ax.text(x0_mm + 1.0, y0_mm + 7.0, label, fontsize=7)


def plot_12lead(signal: np.ndarray, fs: float, leads: list[str], title: str = "", seconds: float = 10.0):
    """Figure of a (12, T) mV signal: 3 rows x 4 columns of 2.5 s, then a 10 s lead II strip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {name: i for i, name in enumerate(leads)}
    n = int(round(seconds * fs))
    col = n // 4
    width, height = seconds * MM_PER_S, ROW_MM * 4
    fig, ax = plt.subplots(figsize=(width / 22, height / 22 + 0.6))
    _grid(ax, width, height)
    for r, row in enumerate(LAYOUT):
        y0 = height - ROW_MM * (r + 0.5)
        for c, name in enumerate(row):
            if name in index:
                seg = signal[index[name], c * col : (c + 1) * col]
                _trace(ax, c * col / fs * MM_PER_S, y0, seg, fs, name)
    if "II" in index:
        _trace(ax, 0.0, ROW_MM * 0.5, signal[index["II"], :n], fs, "II")
    if title:
        ax.set_title("\n".join(textwrap.wrap(title, 140)), fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def find_report(path: Path, meta: dict) -> str:
    """The report of a record from its dataset's table, else its diagnosis codes or comments."""
    stem = path.with_suffix("") if path.suffix in (".hea", ".dat", ".mat") else path
    for parent in list(stem.parents)[:6]:
        mm = parent / "machine_measurements.csv"
        if mm.is_file():
            import pandas as pd

            table = pd.read_csv(mm, dtype=str)
            rows = table[table["study_id"] == stem.name]
            if len(rows):
                parts = [rows.iloc[0][c] for c in table.columns if c.startswith("report_")]
                return ". ".join(p for p in parts if isinstance(p, str) and p.strip()) + "."
        db = parent / "ptbxl_database.csv"
        if db.is_file():
            import pandas as pd

            table = pd.read_csv(db, dtype=str)
            rel = str(stem.relative_to(parent))
            rows = table[(table["filename_hr"] == rel) | (table["filename_lr"] == rel)]
            if len(rows):
                return str(rows.iloc[0]["report"])
    codes = meta.get("dx") or []
    if codes:
        return "Dx: " + ", ".join(_snomed_names().get(c, c) for c in codes)
    return " ".join(meta.get("comments") or [])


def _snomed_names() -> dict[str, str]:
    from melp.synth.findings import table

    names = {}
    for name, f in table()["findings"].items():
        for code in f["snomed"]:
            names.setdefault(code, f"{f['statements'][0]} ({code})")
    return names
