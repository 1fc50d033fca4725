"""A gallery of one simulated example per finding: ``python -m melp.synth.gallery docs/gallery.png``.

Each panel shows 5 s of the three leads where the finding is best seen (``show`` in
statements.yaml), on paper-style grid, titled with the finding and the ECG's report.
"""
from __future__ import annotations

import sys
import textwrap

import numpy as np

from melp.data.leads import CANONICAL_LEADS
from melp.synth.findings import FINDINGS, table
from melp.synth.plot import MM_PER_MV, MM_PER_S, _grid
from melp.synth.simulate import simulate

SECONDS = 5.0
ROW_MM = 22.0


def make_gallery(path, seed: int = 0, columns: int = 5, dpi: int = 60) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batch = simulate(len(FINDINGS), seed, findings=[[name] for name in FINDINGS], noise=False)
    rows = int(np.ceil(len(FINDINGS) / columns))
    width, height = SECONDS * MM_PER_S, ROW_MM * 3
    fig, axes = plt.subplots(rows, columns, figsize=(columns * width / 24, rows * (height / 24 + 0.7)))
    n = int(SECONDS * batch.fs)
    for k, ax in enumerate(axes.ravel()):
        if k >= len(FINDINGS):
            ax.axis("off")
            continue
        name = FINDINGS[k]
        _grid(ax, width, height)
        for r, lead in enumerate(table()["findings"][name]["show"]):
            y0 = height - ROW_MM * (r + 0.5)
            values = batch.signals[k, CANONICAL_LEADS.index(lead), :n]
            t_mm = np.arange(n) / batch.fs * MM_PER_S
            ax.plot(t_mm, y0 + (values - np.median(values)) * MM_PER_MV, color="black", linewidth=0.5)
            ax.text(1.0, y0 + 6.0, lead, fontsize=6)
        ax.set_title(f"{name}: " + "\n".join(textwrap.wrap(batch.reports[k], 52)), fontsize=6, loc="left")
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)


if __name__ == "__main__":
    make_gallery(sys.argv[1] if len(sys.argv) > 1 else "gallery.png")
