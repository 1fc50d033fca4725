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


def wave_bounds(path: str) -> dict[str, list[tuple[int, int]]]:
    """(onset, offset) samples of every P wave and QRS that LUDB's cardiologists marked in lead II."""
    import wfdb

    ann = wfdb.rdann(path, "ii")
    bounds = {"p": [], "N": []}
    for k in range(1, len(ann.symbol) - 1):
        if ann.symbol[k] in bounds and ann.symbol[k - 1] == "(" and ann.symbol[k + 1] == ")":
            bounds[ann.symbol[k]].append((ann.sample[k - 1], ann.sample[k + 1]))
    return bounds


def beat_median(signal: np.ndarray, lead: str, bounds, measure) -> float:
    """Median over the marked waves of ``measure`` applied to one lead, from the level at the onset."""
    from melp.data.leads import CANONICAL_LEADS

    row = signal[CANONICAL_LEADS.index(lead)]
    values = [measure(row[on:off + 1] - row[max(on - 3, 0)]) for on, off in bounds]
    return float(np.median(values)) if values else np.nan


def record_measurements(signal: np.ndarray, fs: float, bounds) -> dict[str, float]:
    """The textbook measurements behind LUDB's commonest classes, from the expert wave boundaries."""
    qrs, p_waves = bounds["N"], bounds["p"]
    peak, trough = (lambda s: s.max()), (lambda s: -s.min())
    r = {lead: beat_median(signal, lead, qrs, peak) for lead in ("aVL", "V5", "V6")}
    s_wave = {lead: beat_median(signal, lead, qrs, trough) for lead in ("V1", "V2", "V3")}
    area = {lead: beat_median(signal, lead, qrs, np.sum) for lead in ("I", "aVF")}
    starts = np.array([on for on, _ in qrs])
    rr = np.diff(starts) / fs
    gaps = [(starts[starts > on] - on).min() for on, _ in p_waves if (starts > on).any()]
    gaps = [g for g in gaps if g < 0.5 * fs]  # a P wave belongs to the next QRS within 500 ms
    ms = lambda waves: float(np.median([off - on for on, off in waves])) * 1000 / fs if waves else np.nan
    return {
        "axis": float(np.degrees(np.arctan2(area["aVF"], area["I"]))),  # net QRS areas of I and aVF
        "sokolow": max(s_wave["V1"], s_wave["V2"]) + max(r["V5"], r["V6"]),
        "cornell": r["aVL"] + s_wave["V3"],
        "p_duration": ms(p_waves),
        "p_height_ii": beat_median(signal, "II", p_waves, peak),
        "p_depth_v1": beat_median(signal, "V1", p_waves, trough),
        "late_r_v1": beat_median(signal, "V1", qrs, lambda s: s[len(s) // 2:].max()),  # the r' of rSr'
        "rr_cv": rr.std() / rr.mean() if len(rr) > 2 else np.nan,
        "pr": float(np.median(gaps)) * 1000 / fs if gaps else np.nan,
    }


def ludb_measurements(root: Path):
    """Signals (n, 12, 5000) mV and the measurements (``record_measurements``) as {name: (n,) array},
    in ludb.csv order."""
    import pandas as pd

    import melp

    signals, measured = [], []
    for record_id in pd.read_csv(root / "ludb.csv")["ID"]:
        path = str(root / "data" / str(record_id))
        rec = melp.read_record(path)  # mV at one gain (LUDB's header gains stretch each lead to 1 mV)
        signals.append(rec.signal)
        measured.append(record_measurements(rec.signal, rec.fs, wave_bounds(path)))
    return np.stack(signals), {k: np.array([m[k] for m in measured]) for k in measured[0]}


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


def ludb_labels(ludb_root: Path, n: int) -> list[list[str]]:
    """Each record's LUDB classes, in ludb.csv order (the order ``ludb_measurements`` reads them)."""
    from melp.data.adapters.ludb import load_table

    table, _, _ = load_table(ludb_root)
    return list(table.set_index(table["record_id"].astype(int)).loc[range(1, n + 1)]["labels_ludb"])


def zero_shot_aurocs(model, real: np.ndarray, labels: list[list[str]]) -> tuple[dict[str, float], int]:
    """The zero-shot AUROC of every LUDB class with a shipped description (embedded as `melp
    zeroshot` embeds them), and how many classes have none."""
    from melp.eval.descriptions import descriptions_for
    from melp.eval.zeroshot import class_text_embeddings

    describe, missing = descriptions_for("ludb", sorted({name for row in labels for name in row}))
    scores = real @ class_text_embeddings(model, describe).T
    return ({name: auroc(np.array([name in row for row in labels]), scores[:, j]) for j, name in enumerate(describe)},
            len(missing))


def per_finding_table(labels: list[list[str]], zero_shot: dict[str, float], real: np.ndarray, sim: np.ndarray,
                      findings: np.ndarray) -> None:
    from sklearn.linear_model import LogisticRegression

    from melp.synth.findings import INDEX

    half = len(sim) // 2
    print(f"\n{'finding':<7} {'LUDB class':<46} {'pos':>4} {'zero-shot':>9} {'probe LUDB':>10} {'probe sim':>9}")
    rows = []
    for finding in [*COUNTERPARTS, *GROUPS]:
        y_real, name, label = counterpart_labels(labels, finding)
        y_sim = findings[:, INDEX[finding]].astype(bool)
        if y_real.sum() == 0 or y_sim[:half].sum() == 0:
            continue
        probe = LogisticRegression(max_iter=3000).fit(sim[:half], y_sim[:half])
        zs = zero_shot[name] if name else np.nan
        row = (zs, auroc(y_real, probe.decision_function(real)), auroc(y_sim[half:], probe.decision_function(sim[half:])))
        rows.append(row)
        print(f"{finding:<7} {label[:46]:<46} {int(y_real.sum()):>4} "
              + " ".join(f"{v * 100:{w}.1f}" if not np.isnan(v) else f"{'-':>{w}}" for v, w in zip(row, (9, 10, 9))))
    zs, pl, ps = np.array(rows).T
    one = ~np.isnan(zs)
    print(f"{'mean':<7} {'all rows':<46} {'':>4} {'':>9} {pl.mean() * 100:10.1f} {ps.mean() * 100:9.1f}")
    print(f"{'mean':<7} {'rows with one LUDB class':<46} {'':>4} {zs[one].mean() * 100:9.1f} "
          f"{pl[one].mean() * 100:10.1f} {ps[one].mean() * 100:9.1f}")


CRITERIA = [  # LUDB class, measurement, score (higher = more likely), what the score is
    (AXIS + "normal", "axis", lambda a: -np.abs(a - 50), "axis near +50 (normal +30..+70)"),
    (AXIS + "left axis deviation", "axis", lambda a: -a, "axis, leftwards"),
    (AXIS + "vertical", "axis", lambda a: -np.abs(a - 80), "axis near +80 (vertical +70..+90)"),
    (AXIS + "horizontal", "axis", lambda a: -np.abs(a - 15), "axis near +15 (horizontal 0..+30)"),
    ("Left anterior hemiblock", "axis", lambda a: -a, "axis, leftwards"),
    ("Left ventricular hypertrophy", "sokolow", None, "Sokolow-Lyon (SV1/2 + RV5/6)"),
    ("Left ventricular hypertrophy", "cornell", None, "Cornell (RaVL + SV3)"),
    ("Left atrial hypertrophy", "p_duration", None, "P duration"),
    ("Left atrial hypertrophy", "p_depth_v1", None, "negative P in V1"),
    ("Left atrial overload", "p_duration", None, "P duration"),
    ("Right atrial overload", "p_height_ii", None, "P height in II"),
    ("Incomplete right bundle branch block", "late_r_v1", None, "late R' in V1"),
    ("I degree AV block", "pr", None, "PR interval"),
    ("Atrial fibrillation", "rr_cv", None, "RR coefficient of variation"),
]


def criterion_ceiling(labels: list[list[str]], zero_shot: dict[str, float], missing: int,
                      measured: dict[str, np.ndarray]) -> None:
    """How far the zero-shot LUDB macro can rise if the model learned the textbook criteria.

    Each row scores LUDB's records by one textbook measurement taken at the cardiologists' own
    wave boundaries: the AUROC a model that knew that criterion perfectly would reach on LUDB's
    labels. The macro is then recomputed with every such class at the better of its zero-shot and
    criterion AUROC, the rest as they are.
    """
    print(f"\n{'LUDB class':<48} {'pos':>4} {'zero-shot':>9} {'criterion':>9}  measurement")
    best = dict(zero_shot)
    for name, key, score, what in CRITERIA:
        y = np.array([name in row for row in labels])
        value = auroc(y, score(measured[key]) if score else measured[key])
        best[name] = max(best[name], value)
        print(f"{name[:48]:<48} {int(y.sum()):>4} {zero_shot[name] * 100:9.1f} {value * 100:9.1f}  {what}")
    covered = {name for name, *_ in CRITERIA}
    rest = [best[name] for name in zero_shot if name not in covered]
    print(f"\nmacro over {len(zero_shot)} classes ({missing} without a description): zero-shot "
          f"{np.mean(list(zero_shot.values())) * 100:.1f}; with the criterion classes at their criterion "
          f"{np.mean(list(best.values())) * 100:.1f}")
    need = (0.72 * len(best) - sum(best[name] for name in covered)) / len(rest)
    print(f"for 72 the other {len(rest)} classes (mean {np.mean(rest) * 100:.1f}) would have to average {need * 100:.1f}")


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
    x, measured = ludb_measurements(Path(args.data) / "ludb")
    text = model.embed_text(list(DESCRIPTIONS.values()))
    real = model.embed_ecg(x, fs=500)
    labels = ludb_labels(Path(args.data) / "ludb", len(real))
    batch = simulate(args.n, seed=args.seed)
    sim = model.embed_ecg(batch.signals, fs=500)
    reports = model.embed_text(batch.reports)
    what = {"AFIB": ("rr_cv", "RR coefficient of variation"), "1AVB": ("pr", "PR interval")}
    for j, name in enumerate(DESCRIPTIONS):
        y_real, y_sim = counterpart_labels(labels, name)[0], batch.findings[:, INDEX[name]]
        score = real @ text[j]
        probe = LogisticRegression(max_iter=2000).fit(sim, y_sim)
        print(f"== {name} ({int(y_real.sum())} of {len(y_real)} LUDB records, {int(y_sim.sum())} of {args.n} simulated)")
        key, quantity = what[name]
        rho = spearmanr(score, measured[key], nan_policy="omit")[0]
        rows = [
            ("LUDB zero-shot AUROC", auroc(y_real, score)),
            (f"LUDB {quantity} alone, AUROC", auroc(y_real, measured[key])),
            (f"LUDB rank correlation, score ~ {quantity}", rho),
            ("simulated zero-shot AUROC", auroc(y_sim, sim @ text[j])),
            ("simulated text-side AUROC (reports)", auroc(y_sim, reports @ text[j])),
            ("probe trained on simulated, LUDB AUROC", auroc(y_real, probe.decision_function(real))),
        ]
        for label, value in rows:
            print(f"  {label:<52} {value:.3f}")
    zero_shot, missing = zero_shot_aurocs(model, real, labels)
    per_finding_table(labels, zero_shot, real, sim, batch.findings)
    criterion_ceiling(labels, zero_shot, missing, measured)

if __name__ == "__main__":
    main()
