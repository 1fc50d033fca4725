"""Why atrial fibrillation and first-degree AV block do not transfer from simulated to real ECGs.

    python bench/ludb_transfer.py --model runs/demo/pretrain/model [--data ../shared/data] [--n 1500]

For a trained model (the demo's) it prints, for AF and first-degree AV block:

1. on LUDB: the zero-shot AUROC (cosine to the class description, as ``melp zeroshot``), the AUROC of
   the measured quantity alone (RR coefficient of variation for AF, PR interval for 1AVB, both from
   LUDB's own lead-II annotations), and the rank correlation between the two: does the model's score
   follow the physiology?
2. on simulated ECGs: the same zero-shot AUROC, and the "text-side" AUROC, the cosine between each
   simulated *report* and the description: the ceiling that the report embeddings put on zero-shot
   (an ECG embedding aligned perfectly with its report scores no better);
3. a linear probe trained on simulated embeddings and applied to LUDB: does the ECG feature that
   marks the finding on simulated data mark it on real data?
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DESCRIPTIONS = {  # the shipped LUDB descriptions (src/melp/eval/class_descriptions.yaml)
    "AFIB": "atrial fibrillation, irregularly irregular ventricular rhythm without distinct P waves",
    "1AVB": "first degree atrioventricular block with PR interval longer than 200 ms",
}


def ludb_measurements(root: Path):
    """Signals (n, 12, 5000) mV, labels {finding: bool}, RR CV and PR (ms) from the lead-II annotations."""
    import pandas as pd
    import wfdb

    table = pd.read_csv(root / "ludb.csv")
    labels = {
        "AFIB": table["Rhythms"].str.contains("fibrillation", case=False, na=False).to_numpy(),
        "1AVB": table["Conduction abnormalities"].fillna("").str.split("\n")
        .apply(lambda xs: "I degree av block" in xs).to_numpy(),
    }
    signals, rr_cv, pr = [], [], []
    for record_id in table["ID"]:
        path = str(root / "data" / str(record_id))
        rec = wfdb.rdrecord(path)
        signals.append(rec.p_signal.T)
        ann = wfdb.rdann(path, "ii")
        onsets = [(ann.sample[k - 1], ann.symbol[k]) for k in range(1, len(ann.symbol))
                  if ann.symbol[k] in "pN" and ann.symbol[k - 1] == "("]
        qrs = np.array([s for s, kind in onsets if kind == "N"])
        p_on = [s for s, kind in onsets if kind == "p"]
        rr = np.diff(qrs) / rec.fs
        rr_cv.append(rr.std() / rr.mean() if len(rr) > 2 else np.nan)
        gaps = [(qrs[qrs > p] - p).min() for p in p_on if (qrs > p).any()]
        gaps = [g for g in gaps if g < 0.5 * rec.fs]  # a P wave belongs to the next QRS within 500 ms
        pr.append(np.median(gaps) * 1000 / rec.fs if gaps else np.nan)
    return np.stack(signals), labels, {"AFIB": np.array(rr_cv), "1AVB": np.array(pr)}


def auroc(y, s) -> float:
    from sklearn.metrics import roc_auc_score

    ok = ~np.isnan(s)
    return float(roc_auc_score(y[ok], s[ok]))


def main() -> None:
    import melp
    from scipy.stats import spearmanr
    from sklearn.linear_model import LogisticRegression

    from melp.synth import simulate
    from melp.synth.findings import INDEX

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a model folder (e.g. runs/demo/pretrain/model)")
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[1] / ".." / "shared" / "data"),
                        help="folder holding ludb/")
    parser.add_argument("--n", type=int, default=1500, help="simulated ECGs")
    parser.add_argument("--seed", type=int, default=123)
    args = parser.parse_args()

    model = melp.load(args.model)
    x, labels, measured = ludb_measurements(Path(args.data) / "ludb")
    text = model.embed_text(list(DESCRIPTIONS.values()))
    real = model.embed_ecg(x, fs=500)
    batch = simulate(args.n, seed=args.seed)
    sim = model.embed_ecg(batch.signals, fs=500)
    reports = model.embed_text(batch.reports)
    what = {"AFIB": "RR coefficient of variation", "1AVB": "PR interval"}
    for j, name in enumerate(DESCRIPTIONS):
        y_real, y_sim = labels[name], batch.findings[:, INDEX[name]]
        score = real @ text[j]
        probe = LogisticRegression(max_iter=2000).fit(sim, y_sim)
        print(f"== {name} ({int(y_real.sum())} of {len(y_real)} LUDB records, {int(y_sim.sum())} of {args.n} simulated)")
        rho = spearmanr(score, measured[name], nan_policy="omit")[0]
        rows = [
            ("LUDB zero-shot AUROC", auroc(y_real, score)),
            (f"LUDB {what[name]} alone, AUROC", auroc(y_real, measured[name])),
            (f"LUDB rank correlation, score ~ {what[name]}", rho),
            ("simulated zero-shot AUROC", auroc(y_sim, sim @ text[j])),
            ("simulated text-side AUROC (reports)", auroc(y_sim, reports @ text[j])),
            ("probe trained on simulated, LUDB AUROC", auroc(y_real, probe.decision_function(real))),
        ]
        for label, value in rows:
            print(f"  {label:<52} {value:.3f}")

if __name__ == "__main__":
    main()
