"""Simulated ECGs next to real ones (LUDB, CinC), measured by the same code.

    python bench/synth_realism.py [--data ../shared/data] [--n 120] [--n-mix 300] [--seed 0]

Four parts:

1. normal sinus ECGs against LUDB's: intervals, axis and R/S shape by lead (below);
2. amplitude by lead (peak-to-peak, mV) and intervals of the simulated mix against all of LUDB and
   cinc-smoke;
3. power spectrum by lead: the share of the 0-65 Hz power in the bands 0-0.5, 0.5-5, 5-15, 15-40
   and 45-65 Hz (shares do not depend on the lead's scale, so LUDB compares too);
4. a real-vs-simulated discriminator: gradient-boosted trees on spectral, statistical and rhythm
   features of each 10 s record, the record first scaled to a peak-to-peak of 1 over all its leads
   (as the model's min-max normalisation does: the leads keep their relative sizes, the recorder's
   overall gain does not count), 5-fold cross-validation with each subject in one fold.
   Its out-of-fold AUROC is the realism figure: 0.5 = indistinguishable, 1.0 = always told apart.
   The features that alone separate best (univariate AUROC) show where the simulator differs.

The simulated mix is ``simulate(n_mix, seed)`` with findings drawn as the demo draws them; the real
set is LUDB's 200 records and the 70 of cinc-smoke (first 10 s, resampled to 500 Hz).

Every record (simulated or real) goes through the same delineation: neurokit2's cleaning, R-peak
detection and DWT delineation on lead II, then intervals per beat (median per record) and, on
the record's median beat, the frontal QRS axis (net QRS area in I and aVF) and the R, S and T
amplitudes by lead in mV (relative to the PR segment). The table prints the median and
inter-quartile range of each measurement over records; "inside" says whether the simulated median
lies within the real inter-quartile range of normal sinus ECGs.

LUDB 1.0.1's headers give every lead a gain that stretches it to a peak-to-peak of exactly 1 mV;
``melp.read_record`` reads its counts at one gain instead (1 uV per count, docs/data.md), so LUDB's
amplitudes compare in mV like any other record's.

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
from melp.data.preprocess import resample

FS = 500
L = {name: i for i, name in enumerate(CANONICAL_LEADS)}
AMPLITUDE_LEADS = ("I", "II", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6")
BANDS = ((0.0, 0.5), (0.5, 5.0), (5.0, 15.0), (15.0, 40.0), (45.0, 65.0))
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
    pre, post = on + int(0.04 * fs), off + int(0.4 * fs)  # PR segment to the end of a T wave
    inner = [p for p in peaks if p - pre >= 0 and p + post < signal.shape[1]]
    if len(inner) < 3:
        return None
    beat = np.median(np.stack([signal[:, p - pre : p + post] for p in inner]), axis=0)
    beat -= beat[:, : int(0.02 * fs)].mean(axis=1, keepdims=True)  # from the PR segment
    qrs = beat[:, pre - on : pre + off]
    t_wave = beat[:, pre + off + int(0.06 * fs) :]  # ST segment's end to 400 ms after the QRS
    out["QRS axis (deg)"] = float(np.degrees(np.arctan2(qrs[L["aVF"]].sum() * 2 / np.sqrt(3), qrs[L["I"]].sum())))
    for lead in AMPLITUDE_LEADS:
        out[f"R {lead} (mV)"] = float(max(qrs[L[lead]].max(), 0.0))
        out[f"S {lead} (mV)"] = float(max(-qrs[L[lead]].min(), 0.0))
        out[f"T {lead} (mV)"] = float(t_wave[L[lead], np.abs(t_wave[L[lead]]).argmax()])  # signed peak
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


def real_records(data: Path) -> tuple[list[np.ndarray], list[str], list[str]]:
    """The first 10 s at 500 Hz of every LUDB and cinc-smoke record, with source and record name."""
    import melp

    paths = [("LUDB", p) for p in sorted((data / "ludb" / "data").glob("*.hea"))]
    paths += [("CinC", p) for p in sorted((data / "cinc-smoke").rglob("*.hea"))]
    signals, sources, names = [], [], []
    for source, hea in tqdm(paths, desc="real records"):
        rec = melp.read_record(hea.with_suffix(""))
        x = resample(np.nan_to_num(rec.signal.astype(np.float64)), rec.fs, FS)[:, : 10 * FS]
        if x.shape[1] < 10 * FS:
            continue
        signals.append(x.astype(np.float32))
        sources.append(source)
        names.append(f"{source}:{hea.stem}")
    return signals, sources, names


def band_shares(x: np.ndarray) -> np.ndarray:
    """(12, T) -> (12, len(BANDS)) share of each lead's 0-65 Hz power in each band (Welch)."""
    from scipy.signal import welch

    f, pxx = welch(x - x.mean(1, keepdims=True), fs=FS, nperseg=2048, axis=1)
    total = pxx[:, f <= 65].sum(1, keepdims=True)
    shares = [pxx[:, (f >= lo) & (f < hi)].sum(1) for lo, hi in BANDS]
    # the 0-0.5 Hz band includes DC's neighbour bins: the mean was removed, so it is wander only
    return np.stack(shares, axis=1) / np.maximum(total, 1e-12)


def rhythm_features(x: np.ndarray) -> dict[str, float]:
    """Heart rate and RR variability from R peaks of lead II (NaN when detection fails)."""
    import neurokit2 as nk

    try:
        _, info = nk.ecg_peaks(nk.ecg_clean(x[L["II"]], sampling_rate=FS), sampling_rate=FS)
        rr = np.diff(np.asarray(info["ECG_R_Peaks"])) / FS
    except Exception:  # noqa: BLE001 - neurokit2 raises many kinds on odd records
        rr = np.array([])
    if len(rr) < 3:
        return {"hr": np.nan, "rr_cv": np.nan, "rr_succ": np.nan}
    return {"hr": 60 / np.median(rr), "rr_cv": rr.std() / rr.mean(),
            "rr_succ": np.sqrt(np.mean(np.diff(rr) ** 2)) / rr.mean()}


def features(x: np.ndarray) -> dict[str, float]:
    """Description of one (12, T) record for the discriminator, free of the recorder's overall gain."""
    from scipy.stats import kurtosis, skew

    x = x - np.median(x, axis=1, keepdims=True)
    x = x / max(float(np.ptp(x)), 1e-6)  # one scale for all leads, as the model's min-max normalisation
    out = {}
    shares = np.log10(band_shares(x) + 1e-6)
    d = np.diff(x, axis=1)
    for i, lead in enumerate(CANONICAL_LEADS):
        for j, (lo, hi) in enumerate(BANDS):
            out[f"{lead} log power share {lo:g}-{hi:g} Hz"] = shares[i, j]
        out[f"{lead} sd"] = x[i].std()
        out[f"{lead} skewness"] = skew(x[i])
        out[f"{lead} kurtosis"] = kurtosis(x[i])
        out[f"{lead} sd of first difference"] = d[i].std()
        out[f"{lead} median |first difference|"] = np.median(np.abs(d[i]))
    out.update(rhythm_features(x))
    return out


def lead_table(title: str, columns: dict[str, np.ndarray], fmt_value) -> None:
    """Rows = leads; each column a (records, 12) array summarised by its median per lead."""
    print(f"\n{title}")
    header = f"{'lead':<5}" + "".join(f"{c:>14}" for c in columns)
    print(header)
    print("-" * len(header))
    for i, lead in enumerate(CANONICAL_LEADS):
        print(f"{lead:<5}" + "".join(f"{fmt_value(np.nanmedian(v[:, i])):>14}" for v in columns.values()))


def amplitude_and_intervals(sim: list[np.ndarray], real: list[np.ndarray], sources: list[str]) -> None:
    cinc = [x for x, s in zip(real, sources) if s == "CinC"]
    ptp = lambda xs: np.stack([np.ptp(x, axis=1) for x in xs])  # noqa: E731
    ludb = [x for x, s in zip(real, sources) if s == "LUDB"]
    lead_table("amplitude by lead: median peak-to-peak (mV)",
               {"simulated": ptp(sim), "LUDB": ptp(ludb), "cinc-smoke": ptp(cinc)}, lambda v: f"{v:.2f}")
    rows = {"simulated": [measure(x) for x in tqdm(sim, desc="delineate simulated")],
            "LUDB": [measure(x) for x in ludb],
            "cinc-smoke": [measure(x) for x in cinc]}
    tables = {k: summarise(v) for k, v in rows.items()}
    print("\nintervals, all findings: median [IQR] over the records neurokit2 could delineate "
          + ", ".join(f"{k} {len(t)}/{len(rows[k])}" for k, t in tables.items()))
    header = f"{'measurement':<18}" + "".join(f"{k:>26}" for k in tables)
    print(header)
    print("-" * len(header))
    for col in ("heart rate (bpm)", "PR (ms)", "QRS (ms)", "QT (ms)", "QTc Bazett (ms)", "QRS axis (deg)"):
        print(f"{col:<18}" + "".join(f"{fmt(t[col]):>26}" for t in tables.values()))


def spectra(sim: list[np.ndarray], real: list[np.ndarray], sources: list[str]) -> None:
    groups = {"simulated": sim, "LUDB": [x for x, s in zip(real, sources) if s == "LUDB"],
              "cinc-smoke": [x for x, s in zip(real, sources) if s == "CinC"]}
    shares = {k: np.stack([band_shares(x) for x in v]) for k, v in groups.items()}  # (records, 12, bands)
    print("\npower spectrum by lead: median share (%) of the 0-65 Hz power, simulated / LUDB / cinc-smoke")
    header = f"{'lead':<5}" + "".join(f"{f'{lo:g}-{hi:g} Hz':>21}" for lo, hi in BANDS)
    print(header)
    print("-" * len(header))
    for i, lead in enumerate(CANONICAL_LEADS):
        cells = ["/".join(f"{100 * np.median(shares[k][:, i, j]):.3g}" for k in groups) for j in range(len(BANDS))]
        print(f"{lead:<5}" + "".join(f"{c:>21}" for c in cells))


def discriminator(sim: list[np.ndarray], sim_subjects: np.ndarray, real: list[np.ndarray],
                  names: list[str], seed: int) -> None:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    feats = pd.DataFrame([features(x) for x in tqdm(sim + real, desc="features")])
    y = np.r_[np.zeros(len(sim)), np.ones(len(real))]
    groups = np.r_[[f"sim:{s}" for s in sim_subjects], names]  # one subject per real record
    oof = np.zeros(len(y))
    folds = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    for train, test in folds.split(feats, y, groups):
        clf = HistGradientBoostingClassifier(max_iter=200, learning_rate=0.05, random_state=seed)
        clf.fit(feats.iloc[train], y[train])
        oof[test] = clf.predict_proba(feats.iloc[test])[:, 1]
    source = np.r_[["sim"] * len(sim), [n.split(":")[0] for n in names]]
    print(f"\nreal-vs-simulated discriminator ({len(sim)} simulated, {len(real)} real; 5-fold, subject-disjoint)")
    print(f"  AUROC all real {roc_auc_score(y, oof):.3f}", end="")
    for src in ("LUDB", "CinC"):
        keep = (source == "sim") | (source == src)
        print(f"; vs {src} only {roc_auc_score(y[keep], oof[keep]):.3f}", end="")
    print("   (0.5 = indistinguishable)")
    uni = {c: roc_auc_score(y, feats[c].fillna(feats[c].median())) for c in feats.columns}
    worst = sorted(uni.items(), key=lambda kv: -abs(kv[1] - 0.5))[:10]
    print("  features that alone tell them apart best (AUROC; > 0.5 = higher in real records):")
    for name, auc in worst:
        print(f"    {name:<40} {auc:.3f}  sim median {feats[name][y == 0].median():.3g}, "
              f"real {feats[name][y == 1].median():.3g}")


def normal_sinus(root: Path, n: int, seed: int) -> None:
    import melp
    from melp.synth import simulate

    normal_paths, sinus_paths = ludb_records(root)
    real = {}
    for p in tqdm(sinus_paths, desc="LUDB sinus rhythm"):
        real[p] = measure(melp.read_record(p).signal)
    real_normal = summarise([real[p] for p in normal_paths])
    real_sinus = summarise(list(real.values()))
    batch = simulate(n, seed, findings=["NORM"])
    sim = summarise([measure(s) for s in tqdm(batch.signals, desc="simulated normal")])

    print(f"\nrecords delineated: simulated {len(sim)}/{n}, LUDB normal sinus {len(real_normal)}/"
          f"{len(normal_paths)}, LUDB all sinus rhythm {len(real_sinus)}/{len(sinus_paths)}")
    print("median [IQR]; inside = simulated median within the IQR of LUDB normal sinus ECGs")
    print()
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"),
                        help="folder holding ludb/ and cinc-smoke/")
    parser.add_argument("--n", type=int, default=120, help="simulated normal ECGs (part 1)")
    parser.add_argument("--n-mix", type=int, default=300, help="simulated ECGs with drawn findings (parts 2-4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-normal", action="store_true", help="leave out part 1")
    args = parser.parse_args()

    from melp.synth import simulate

    data = Path(args.data)
    if not args.skip_normal:
        normal_sinus(data / "ludb", args.n, args.seed)
    batch = simulate(args.n_mix, args.seed + 1)
    sim = list(batch.signals)
    real, sources, names = real_records(data)
    amplitude_and_intervals(sim, real, sources)
    spectra(sim, real, sources)
    discriminator(sim, batch.subject_ids, real, names, args.seed)


if __name__ == "__main__":
    main()
