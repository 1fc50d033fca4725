"""The embedded default: a physiological 12-lead ECG + report simulator and its exporters.

    simulate(n, seed)              -> SimBatch (signals (n, 12, 5000) mV at 500 Hz, reports, findings)
    export(fmt, out_dir, n, seed)  writes a real dataset layout: mimic-iv-ecg, ptbxl or cinc
    FINDINGS                       the finding names (columns of SimBatch.findings)
"""
from __future__ import annotations

from melp.synth.findings import FINDINGS
from melp.synth.simulate import SimBatch, simulate


def export(fmt: str, out_dir, n: int, seed: int = 0, progress: bool = False):
    """Write n simulated ECGs in the layout of a real dataset (see melp.synth.exporters)."""
    from melp.synth.exporters import export as _export

    return _export(fmt, out_dir, n, seed, progress=progress)


__all__ = ["FINDINGS", "SimBatch", "simulate", "export"]
