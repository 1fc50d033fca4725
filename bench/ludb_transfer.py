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

Then, for every simulated finding that has a LUDB counterpart, one table row: LUDB positives, the
zero-shot AUROC of the LUDB class's shipped description (single-class counterparts), the AUROC on
LUDB of a linear probe trained on simulated embeddings (simulated labels only), and that probe's
AUROC on held-out simulated ECGs. Where the probe transfers and zero-shot does not, the ECG
features are there and the text alignment is what fails; where the probe fails on LUDB while it
separates simulated ECGs, the simulated finding does not look like the real one.
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

    import melp

    table = pd.read_csv(root / "ludb.csv")
    labels = {
        "AFIB": table["Rhythms"].str.contains("fibrillation", case=False, na=False).to_numpy(),
        "1AVB": table["Conduction abnormalities"].fillna("").str.split("\n")
        .apply(lambda xs: "I degree av block" in xs).to_numpy(),
    }
    signals, rr_cv, pr = [], [], []
    for record_id in table["ID"]:
        path = str(root / "data" / str(record_id))
        rec = melp.read_record(path)  # mV at one gain (LUDB's header gains stretch each lead to 1 mV)
        signals.append(rec.signal)
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


AXIS = "Electric axis of the heart: "
COUNTERPARTS = {  # simulated finding -> the LUDB classes it stands for (positive: any of them)
    "SR": ["Sinus rhythm"], "SBRAD": ["Sinus bradycardia"], "STACH": ["Sinus tachycardia"],
    "SARRH": ["Sinus arrhythmia"], "AFIB": ["Atrial fibrillation"], "AFLT": ["Atrial flutter, typical"],
    "LAD": [AXIS + "left axis deviation"], "RAD": [AXIS + "right axis deviation"],
    "1AVB": ["I degree AV block"], "RBBB": ["Complete right bundle branch block"],
    "IRBBB": ["Incomplete right bundle branch block"], "LBBB": ["Complete left bundle branch block"],
    "LAFB": ["Left anterior hemiblock"], "LVH": ["Left ventricular hypertrophy"],
    "LAE": ["Left atrial hypertrophy", "Left atrial overload"],
    "RAE": ["Right atrial overload", "Right atrial hypertrophy"], "ERP": ["Early repolarization syndrome"],
}
GROUPS = {  # simulated finding -> (what its LUDB counterpart is, which LUDB classes belong to it)
    "PACE": ("any pacing class", lambda name: "pacing" in name.lower() or name.startswith("Pacemaker")
             or name == "P-synchrony"),
    "PAC": ("any atrial extrasystole", lambda name: name.startswith("Atrial extrasystole")),
    "PVC": ("any ventricular extrasystole", lambda name: name.startswith("Ventricular extrasystole")),
}


def counterpart_labels(labels: list[list[str]], finding: str) -> tuple[np.ndarray, str | None, str]:
    """LUDB labels of a simulated finding's counterpart, its one class name (None: several), and
    what to call it in the table."""
    if finding in GROUPS:
        label, member = GROUPS[finding]
        return np.array([any(map(member, row)) for row in labels]), None, label
    names = COUNTERPARTS[finding]
    return (np.array([any(name in row for name in names) for row in labels]),
            names[0] if len(names) == 1 else None, " or ".join(names))


def per_finding_table(model, ludb_root: Path, real: np.ndarray, sim: np.ndarray, findings: np.ndarray) -> None:
    from sklearn.linear_model import LogisticRegression

    from melp.data.adapters.ludb import load_table
    from melp.eval.descriptions import descriptions_for
    from melp.eval.zeroshot import class_text_embeddings
    from melp.synth.findings import INDEX

    table, _, _ = load_table(ludb_root)
    table = table.set_index(table["record_id"].astype(int)).loc[range(1, len(real) + 1)]  # ludb.csv order
    labels = list(table["labels_ludb"])
    names = [spec[0] for spec in COUNTERPARTS.values() if len(spec) == 1]
    describe, _ = descriptions_for("ludb", names)
    class_emb = dict(zip(describe, class_text_embeddings(model, describe)))  # as `melp zeroshot` embeds them
    half = len(sim) // 2
    print(f"\n{'finding':<7} {'LUDB class':<46} {'pos':>4} {'zero-shot':>9} {'probe LUDB':>10} {'probe sim':>9}")
    rows = []
    for finding in [*COUNTERPARTS, *GROUPS]:
        y_real, name, label = counterpart_labels(labels, finding)
        y_sim = findings[:, INDEX[finding]].astype(bool)
        if y_real.sum() == 0 or y_sim[:half].sum() == 0:
            continue
        probe = LogisticRegression(max_iter=3000).fit(sim[:half], y_sim[:half])
        zs = auroc(y_real, real @ class_emb[name]) if name else np.nan
        row = (zs, auroc(y_real, probe.decision_function(real)), auroc(y_sim[half:], probe.decision_function(sim[half:])))
        rows.append(row)
        print(f"{finding:<7} {label[:46]:<46} {int(y_real.sum()):>4} "
              + " ".join(f"{v * 100:{w}.1f}" if not np.isnan(v) else f"{'-':>{w}}" for v, w in zip(row, (9, 10, 9))))
    zs, pl, ps = np.array(rows).T
    one = ~np.isnan(zs)
    print(f"{'mean':<7} {'all rows':<46} {'':>4} {'':>9} {pl.mean() * 100:10.1f} {ps.mean() * 100:9.1f}")
    print(f"{'mean':<7} {'rows with one LUDB class':<46} {'':>4} {zs[one].mean() * 100:9.1f} "
          f"{pl[one].mean() * 100:10.1f} {ps[one].mean() * 100:9.1f}")


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
    per_finding_table(model, Path(args.data) / "ludb", real, sim, batch.findings)

if __name__ == "__main__":
    main()
