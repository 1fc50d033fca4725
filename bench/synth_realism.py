"""Simulated normal sinus ECGs next to the real ones of LUDB, measured by the same code.

    python bench/synth_realism.py [--ludb ../shared/data/ludb] [--n 120] [--seed 0]

Every record (simulated or real) goes through the same delineation: neurokit2's cleaning, R-peak
detection and DWT delineation on lead II, then intervals per beat (median per record) and, on
the record's median beat, the frontal QRS axis (net QRS area in I and aVF) and R and S
amplitudes by lead (relative to the PR segment). The table prints the median and inter-quartile
range of each measurement over records; "inside" says whether the simulated median lies within
the real inter-quartile range of normal sinus ECGs.

LUDB 1.0.1 is distributed with every lead scaled to a peak-to-peak of exactly 1 over the record
(per-lead gains; check ``np.ptp`` of any record), so absolute millivolts cannot be compared. For the
axis and the R/S amplitudes, both simulated and real leads are therefore scaled the same way
(each lead divided by its own peak-to-peak): amplitudes are then shares of the lead's range, which
compares the QRS shape of each lead (R/S balance, R progression) but not the overall voltage.

Real normal sinus ECGs: LUDB records whose rhythm (ludb.csv) is "Sinus rhythm" and that have no
conduction abnormality, extrasystole, hypertrophy, pacing or ischaemia; all sinus-rhythm records
are shown too.
"""
from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from melp.data.leads import CANONICAL_LEADS

FS = 500
L = {name: i for i, name in enumerate(CANONICAL_LEADS)}
AMPLITUDE_LEADS = ("I", "II", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
EXCLUDE = ["Conduction abnormalities", "Extrasystolies", "Hypertrophies", "Cardiac pacing", "Ischemia"]


def ludb_records(root: Path) -> tuple[list[Path], list[Path]]:
    table = pd.read_csv(root / "ludb.csv")
    sinus = table[table["Rhythms"].astype(str).str.strip() == "Sinus rhythm"]
    clean = sinus[sinus[EXCLUDE].fillna("").apply(lambda c: c.astype(str).str.strip() == "").all(axis=1)]
    path = lambda ids: [root / "data" / str(i) for i in ids]  # noqa: E731
    return path(clean["ID"]), path(sinus["ID"])


def measure(signal: np.ndarray, fs: float = FS) -> dict[str, float] | None:
    """Intervals, axis and amplitudes of one (12, T) mV record; None when delineation fails."""
    import neurokit2 as nk

    lead_ii = nk.ecg_clean(signal[L["II"]], sampling_rate=fs)
    try:
        _, info = nk.ecg_peaks(lead_ii, sampling_rate=fs)
        peaks = np.asarray(info["ECG_R_Peaks"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _, waves = nk.ecg_delineate(lead_ii, peaks, sampling_rate=fs, method="dwt")
    except Exception:  # noqa: BLE001 - neurokit2 raises many kinds on odd records
        return None
    if len(peaks) < 4:
        return None
    w = {k: np.asarray(v, dtype=float) for k, v in waves.items()}
    ms = 1000.0 / fs

    def med(a, b):
        d = (w[a] - w[b]) * ms
        return float(np.nanmedian(d)) if np.isfinite(d).any() else np.nan

    out = {
        "heart rate (bpm)": 60.0 / np.median(np.diff(peaks) / fs),
        "PR (ms)": med("ECG_R_Onsets", "ECG_P_Onsets"),
        "QRS (ms)": med("ECG_R_Offsets", "ECG_R_Onsets"),
        "QT (ms)": med("ECG_T_Offsets", "ECG_R_Onsets"),
    }
    out["QTc Bazett (ms)"] = out["QT (ms)"] / np.sqrt(60.0 / out["heart rate (bpm)"])

    # Median beat around the R peaks, QRS window from the delineation.
    on = np.nanmedian(peaks - w["ECG_R_Onsets"][: len(peaks)]) if np.isfinite(w["ECG_R_Onsets"]).any() else 25
    off = np.nanmedian(w["ECG_R_Offsets"][: len(peaks)] - peaks) if np.isfinite(w["ECG_R_Offsets"]).any() else 25
    on, off = int(np.clip(on, 10, 80)), int(np.clip(off, 10, 80))
    pre, post = on + int(0.04 * fs), off
    inner = [p for p in peaks if p - pre >= 0 and p + post < signal.shape[1]]
    if len(inner) < 3:
        return None
    scaled = signal / np.maximum(np.ptp(signal, axis=1, keepdims=True), 1e-6)  # as LUDB is distributed
    beat = np.median(np.stack([scaled[:, p - pre : p + post] for p in inner]), axis=0)
    baseline = beat[:, : int(0.02 * fs)].mean(axis=1, keepdims=True)  # PR segment
    qrs = beat[:, pre - on :] - baseline
    out["QRS axis (deg)"] = float(np.degrees(np.arctan2(qrs[L["aVF"]].sum() * 2 / np.sqrt(3), qrs[L["I"]].sum())))
    for lead in AMPLITUDE_LEADS:
        out[f"R {lead} (/ptp)"] = float(max(qrs[L[lead]].max(), 0.0))
        out[f"S {lead} (/ptp)"] = float(max(-qrs[L[lead]].min(), 0.0))
    return out


def summarise(rows: list[dict | None]) -> pd.DataFrame:
    """One row per record that could be delineated."""
    return pd.DataFrame([r for r in rows if r is not None])


def fmt(values: pd.Series) -> str:
    v = values.dropna()
    if v.empty:
        return "-"
    q1, q2, q3 = np.percentile(v, [25, 50, 75])
    return f"{q2:7.2f} [{q1:7.2f}, {q3:7.2f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ludb", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "ludb"))
    parser.add_argument("--n", type=int, default=120, help="simulated normal ECGs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import melp
    from melp.synth import simulate

    root = Path(args.ludb)
    normal_paths, sinus_paths = ludb_records(root)
    real = {}
    for p in tqdm(sinus_paths, desc="LUDB sinus rhythm"):
        real[p] = measure(melp.read_record(p).signal)
    real_normal = summarise([real[p] for p in normal_paths])
    real_sinus = summarise(list(real.values()))
    batch = simulate(args.n, args.seed, findings=["NORM"])
    sim = summarise([measure(s) for s in tqdm(batch.signals, desc="simulated normal")])

    print(f"\nrecords delineated: simulated {len(sim)}/{args.n}, LUDB normal sinus {len(real_normal)}/"
          f"{len(normal_paths)}, LUDB all sinus rhythm {len(real_sinus)}/{len(sinus_paths)}")
    print("median [IQR]; inside = simulated median within the IQR of LUDB normal sinus ECGs")
    print("axis and R/S amplitudes on leads scaled to peak-to-peak 1, as LUDB is distributed\n")
    header = f"{'measurement':<18} {'simulated':>26} {'LUDB normal sinus':>26} {'LUDB sinus rhythm':>26}  inside"
    print(header)
    print("-" * len(header))
    inside = 0
    for col in sim.columns:
        q1, q3 = np.nanpercentile(real_normal[col], [25, 75])
        ok = q1 <= np.nanmedian(sim[col]) <= q3
        inside += ok
        print(f"{col:<18} {fmt(sim[col]):>26} {fmt(real_normal[col]):>26} {fmt(real_sinus[col]):>26}  {'yes' if ok else 'no'}")
    print(f"\n{inside}/{len(sim.columns)} simulated medians inside the real IQR")


if __name__ == "__main__":
    main()
