"""Zero-shot on real records (LUDB diagnoses; cinc-smoke through the generic CinC adapter) when
MELP_REAL_DATA points to the shared folder. A few records are copied into tmp_path in their
original layout, so the adapters and readers see the real files."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from melp.cli import main
from melp.eval.outputs import read_scores


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import torch

    import melp

    torch.manual_seed(0)
    return melp.MELP.from_preset("tiny").save_pretrained(tmp_path_factory.mktemp("model") / "tiny")


def _agrees_with_sklearn(out):
    result = json.loads((out / "results.json").read_text())
    _, classes, labels, scores = read_scores(out / "scores.csv")
    scored = []
    for c, name in enumerate(classes):
        if 0 < labels[:, c].sum() < len(labels):
            assert result["per_class"][name]["auroc"] == pytest.approx(roc_auc_score(labels[:, c], scores[:, c]))
            scored.append(name)
        else:
            assert result["per_class"][name]["auroc"] is None
    assert scored and result["n_scored_classes"] == len(scored)
    return result


def test_zeroshot_on_real_ludb_records(real_data, model_dir, tmp_path):
    src = real_data / "ludb"
    root = tmp_path / "ludb"
    (root / "data").mkdir(parents=True)
    ids = list(range(1, 17))
    table = pd.read_csv(src / "ludb.csv", dtype=str, keep_default_na=False)
    table[table["ID"].astype(int).isin(ids)].to_csv(root / "ludb.csv", index=False)
    for i in ids:
        for f in (src / "data").glob(f"{i}.*"):
            shutil.copy(f, root / "data" / f.name)
    out = tmp_path / "out"
    assert main(["zeroshot", "--model", str(model_dir), "--dataset", "ludb", "--root", str(root),
                 "--out", str(out), "--bootstrap", "50"]) == 0
    result = _agrees_with_sklearn(out)
    assert result["n"] == len(ids) and result["split"] == "all"
    assert "Sinus rhythm" in result["per_class"] and result["per_class"]["Sinus rhythm"]["n_pos"] > 0
    assert not [s for s in result["skipped"] if "no description" in s["reason"]]  # every diagnosis described


def test_zeroshot_on_real_cinc_records(real_data, model_dir, tmp_path):
    src = real_data / "cinc-smoke"
    root = tmp_path / "cinc"
    picks = {"CPSC_CPSC-Extra": ["A0001", "A0002", "A0003", "Q0001"], "ChapmanShaoxing_Ningbo": ["JS00001", "JS00002"],
             "G12EC": None, "PTB_PTBXL": ["HR00001", "HR00002", "S0001"]}
    for folder, stems in picks.items():
        (root / folder).mkdir(parents=True)
        heas = sorted((src / folder).glob("*.hea"))
        chosen = stems if stems is not None else [h.stem for h in heas[:3]]
        for stem in chosen:
            for f in (src / folder).glob(f"{stem}.*"):
                shutil.copy(f, root / folder / f.name)
    meta = pd.read_csv(src / "SPH" / "metadata.csv", dtype=str)
    (root / "SPH").mkdir()
    meta.head(2).to_csv(root / "SPH" / "metadata.csv", index=False)
    for name in meta.head(2)["ECG_ID"]:
        shutil.copy(src / "SPH" / name, root / "SPH" / name)
    out = tmp_path / "out"
    assert main(["zeroshot", "--model", str(model_dir), "--dataset", "cinc", "--root", str(root),
                 "--out", str(out), "--bootstrap", "50"]) == 0
    result = _agrees_with_sklearn(out)
    assert result["n"] == 14 and not result["rejects"]
    assert "426783006" in result["classes"]  # SNOMED codes described through the shared map
    assert np.isfinite(result["macro_auroc"])
