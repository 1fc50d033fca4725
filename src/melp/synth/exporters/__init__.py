"""Writers of simulated ECGs in the on-disk layouts of real datasets (DESIGN section 2).

    mimic-iv-ecg   record_list.csv, machine_measurements.csv, files/pNNNN/pNNNNNNNN/sNNNNNNNN/NNNNNNNN.{hea,dat}
    ptbxl          ptbxl_database.csv, scp_statements.csv, records500/NNNNN/NNNNN_hr, records100/NNNNN/NNNNN_lr
    cinc           gN/ANNNN.{hea,mat} (MATLAB v4 'val', '#Age', '#Sex', '#Dx' SNOMED codes)
"""
from __future__ import annotations

import importlib
from pathlib import Path

FORMATS = {"mimic-iv-ecg": "melp.synth.exporters.mimic", "ptbxl": "melp.synth.exporters.ptbxl",
           "cinc": "melp.synth.exporters.cinc"}


def export(fmt: str, out_dir, n: int, seed: int = 0, progress: bool = False) -> Path:
    """Simulate n ECGs with this seed and write them to out_dir in layout fmt; returns out_dir."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if n < 1:
        raise ValueError(f"export: n must be >= 1, got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    importlib.import_module(FORMATS[fmt]).write(out, n, seed, progress=progress)
    return out
