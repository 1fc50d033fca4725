"""Side-by-side figures of `melp demo` run folders: the simulated and real-ECG results that the
simulator's changes are judged by (docs/synth.md), one row per run.

    python bench/demo_runs.py NAME=RUN_DIR [NAME=RUN_DIR ...]

Columns: zero-shot macro AUROC on the simulated PTB-XL super task and three of its classes, the
100 % linear probe, ECG->report recall@10, the LUDB zero-shot macro, the mean AUROC of LUDB's
29 wall classes (ischaemia, scar, STEMI, ...), of its 5 axis classes and of its 6 pacing classes,
and single LUDB classes (atrial fibrillation, first- and third-degree AV block).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

WALL_WORDS = ("wall", "apical", "septal")


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


def row(run: Path) -> list[float]:
    results = _json(run / "results.json")
    super_ = _json(run / "eval" / "zeroshot-ptbxl-super" / "results.json")["per_class"]
    ludb = _json(run / "eval" / "zeroshot-ludb" / "results.json")["per_class"]

    def mean(classes):
        return 100 * sum(ludb[c]["auroc"] for c in classes) / len(classes)

    walls = [c for c in ludb if any(w in c for w in WALL_WORDS) and not c.startswith("Ventricular")]
    axis = [c for c in ludb if c.startswith("Electric axis")]
    pacing = [c for c in ludb if "pacing" in c.lower() or "Pacemaker" in c or "P-synchrony" in c]
    return [100 * results["zeroshot"]["ptbxl-super"], *(100 * super_[c]["auroc"] for c in ("STTC", "HYP", "CD")),
            100 * results["probe"]["1.0"], 100 * results["retrieval"]["ecg_to_report_r10"],
            100 * results["ludb"]["zeroshot_macro_auroc"], mean(walls), mean(axis), mean(pacing),
            *(100 * ludb[c]["auroc"] for c in ("Atrial fibrillation", "I degree AV block", "III degree AV-block"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    args = parser.parse_args()
    header = ["sim super", "STTC", "HYP", "CD", "probe 100%", "R@10", "LUDB macro", "walls (29)", "axis (5)",
              "pacing (6)", "AF", "1AVB", "3AVB"]
    print("| run | " + " | ".join(header) + " |")
    print("|---|" + "---|" * len(header))
    for spec in args.runs:
        name, _, folder = spec.partition("=")
        print(f"| {name} | " + " | ".join(f"{v:.1f}" for v in row(Path(folder or name))) + " |")


if __name__ == "__main__":
    main()
