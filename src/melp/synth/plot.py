"""`melp plot RECORD -o FILE.png`: a 12-lead ECG on paper-style grid (3 x 4 + lead II rhythm strip).

Standard calibration: 25 mm/s, 10 mm/mV, small squares 1 mm (0.04 s, 0.1 mV), large 5 mm; each row
starts with a 1 mV calibration pulse. The title is the record's name, sampling rate and length, over
its report when one can be found: MIMIC-IV-ECG machine_measurements.csv or PTB-XL
ptbxl_database.csv in a folder above the record, else its '#Dx' codes with their names.
"""
from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

LAYOUT = (("I", "aVR", "V1", "V4"), ("II", "aVL", "V2", "V5"), ("III", "aVF", "V3", "V6"))
MM_PER_S, MM_PER_MV = 25.0, 10.0
ROW_MM = 30.0  # vertical space per row
CAL_MM = 10.0  # left margin of each row, for the calibration pulse


def add_arguments(parser) -> None:
    parser.add_argument("record", help="a record melp.read_record can read (path with or without extension)")
    parser.add_argument("-o", "--out", required=True, help="output image (.png, .pdf, .svg)")
    parser.add_argument("--dpi", type=int, default=100,
                        help="resolution of a bitmap output in dots per inch (default 100)")
    parser.add_argument("--title", default=None,
                        help="title instead of the record's name, sampling rate and report")


def run(args) -> int:
    import melp

    record = melp.read_record(args.record)
    title = args.title if args.title is not None else record_title(Path(args.record), record)
    fig = plot_12lead(record.signal, record.fs, list(record.leads), title=title)
    fig.savefig(args.out, dpi=args.dpi)
    print(f"wrote {args.out}")
    return 0


def record_title(path: Path, record) -> str:
    """'record NAME | FS Hz | LENGTH s', over the record's report when one is found."""
    name = path.stem if path.suffix in (".hea", ".dat", ".mat", ".h5") else path.name
    title = f"record {name} | {record.fs:g} Hz | {record.signal.shape[1] / record.fs:g} s"
    report = find_report(path, record.meta)
    return f"{title}\n{report}" if report else title


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
    if label:  # top left of its cell, on a backing that keeps it legible where a tall wave crosses it
        ax.text(x0_mm + 1.0, y0_mm + ROW_MM / 2 - 1.5, label, fontsize=8, fontweight="bold", va="top", zorder=3,
                bbox=dict(facecolor="white", edgecolor="none", alpha=0.75, pad=0.5))


def _calibration(ax, y0_mm: float) -> None:
    """The 1 mV, 0.2 s pulse at the start of a row (10 mm high, 5 mm wide)."""
    x = np.array([1.0, 3.0, 3.0, 8.0, 8.0, 10.0])
    ax.plot(x, y0_mm + np.array([0, 0, 1, 1, 0, 0]) * MM_PER_MV, color="black", linewidth=0.8)


def plot_12lead(signal: np.ndarray, fs: float, leads: list[str], title: str = "", seconds: float = 10.0):
    """Figure of a (12, T) mV signal: 3 rows x 4 columns of 2.5 s, then a 10 s lead II strip."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = {name: i for i, name in enumerate(leads)}
    n = int(round(seconds * fs))
    col = n // 4
    width, height = CAL_MM + seconds * MM_PER_S, ROW_MM * 4
    fig, ax = plt.subplots(figsize=(width / 22, height / 22 + 0.6))
    _grid(ax, width, height)
    for r, row in enumerate(LAYOUT):
        y0 = height - ROW_MM * (r + 0.5)
        _calibration(ax, y0)
        for c, name in enumerate(row):
            x0 = CAL_MM + c * col / fs * MM_PER_S
            if c:  # a short bar where one lead gives way to the next
                ax.plot([x0, x0], [y0 + 8, y0 + 12], color="black", linewidth=0.8)
            if name in index:
                _trace(ax, x0, y0, signal[index[name], c * col : (c + 1) * col], fs, name)
    _calibration(ax, ROW_MM * 0.5)
    if "II" in index:
        _trace(ax, CAL_MM, ROW_MM * 0.5, signal[index["II"], :n], fs, "II")
    if title:
        wrapped = [part for line in title.splitlines() for part in textwrap.wrap(line, 140)]
        ax.set_title("\n".join(wrapped), fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def find_report(path: Path, meta: dict) -> str:
    """The report of a record from its dataset's table, else its #Dx codes with their names, else ""."""
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
    from melp.eval.descriptions import display_name

    codes = meta.get("dx") or []
    return "Dx: " + ", ".join(map(display_name, codes)) if codes else ""
