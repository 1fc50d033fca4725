"""`melp demo` at micro scale: every step runs (simulate, prepare through the adapters, stage 1, stage 2,
evaluations, plots) and results.json holds the keys outside scripts read."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from trainfixtures import micro_model_yaml


def test_chance_recall_counts_duplicate_reports():
    from melp.train.demo import chance_recall

    assert chance_recall([f"report {i}" for i in range(100)], 10) == pytest.approx(0.1)
    assert chance_recall(["same"] * 20, 10) == pytest.approx(1.0)


def test_demo_settings_take_stage_overrides():
    from melp.train.demo import demo_settings

    s = demo_settings(True, ["pretrain_records=50", "stage2.trainer.max_epochs=3", "stage1.model=/x"])
    assert s["pretrain_records"] == 50 and s["stage2"]["trainer.max_epochs"] == 3 and s["stage1"]["model"] == "/x"
    full = demo_settings(False)
    assert full["probe_fractions"] == [0.01, 0.1, 1.0] and full["pretrain_records"] >= 1000


def test_quick_demo_writes_results(tmp_path):
    from melp.models.text_encoder import build_random_text_model

    text = build_random_text_model(tmp_path / "text", hidden_size=32, layers=2, heads=2, intermediate_size=64)
    model_yaml = micro_model_yaml(tmp_path / "micro.yaml", text)
    out = tmp_path / "demo"
    args = ["--quick", "--out", str(out), "--set", f"stage1.model={text}", "--set", f"stage2.model={model_yaml}"]
    real = os.environ.get("MELP_REAL_DATA")
    with_ludb = bool(real) and (Path(real) / "ludb").is_dir()
    args += ["--set", f"ludb={'true' if with_ludb else 'false'}"]
    done = subprocess.run([sys.executable, "-m", "melp.cli", "demo", *args], capture_output=True, text=True,
                          timeout=600, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert done.returncode == 0, done.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())
    assert results["elapsed_seconds"] > 0
    assert Path(results["model_dir"]).is_dir()
    for key in ("0.01", "0.1", "1.0"):
        assert 0.0 <= results["probe"][key] <= 1.0
    assert 0.0 <= results["zeroshot"]["macro_auroc"] <= 1.0
    assert 0.0 <= results["retrieval"]["ecg_to_report_r10"] <= 1.0
    assert 0.0 < results["retrieval"]["chance_r10"] <= 1.0
    if with_ludb:
        assert 0.0 <= results["ludb"]["zeroshot_macro_auroc"] <= 1.0 and results["ludb"]["n"] > 100
    else:
        assert "ludb" not in results
    md = (out / "results.md").read_text()
    assert "zero-shot macro AUROC" in md and "recall@10" in md and "zero-shot macro AUROC" in done.stdout
    for plot in ("training_curves.png", "example_12lead.png", "roc_ptbxl-super.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    # the pipeline went through the real layouts and caches, and the model folder is loadable
    assert (out / "data" / "mimic-iv-ecg" / "record_list.csv").is_file()
    assert (out / "data" / "ptbxl" / "ptbxl_database.csv").is_file()
    for name in ("mimic-iv-ecg", "ptbxl", "cinc"):
        assert (out / "cache" / name / "index.parquet").is_file()
    assert yaml.safe_load((out / "pretrain" / "config.yaml").read_text())["model_overrides"]["text"]["source"]
    import melp

    assert melp.load(results["model_dir"]).embed_text(["sinus rhythm."]).shape[0] == 1


def test_results_md_lists_ludb_classes_with_enough_positives():
    from melp.train.demo_report import summary_markdown

    per_class = {"Sinus rhythm": {"auroc": 0.71, "n_pos": 143}, "Atrial fibrillation": {"auroc": 0.8, "n_pos": 15},
                 "Aberrant conduction": {"auroc": 0.18, "n_pos": 1}}
    md = summary_markdown({"ludb": {"zeroshot_macro_auroc": 0.6, "n": 200, "per_class": per_class}})
    assert "| Sinus rhythm | 143 | 71.0 |" in md and "| Atrial fibrillation | 15 | 80.0 |" in md
    assert md.index("Sinus rhythm | 143") < md.index("Atrial fibrillation | 15")  # most frequent first
    assert "Aberrant conduction" not in md and "(2 of 3;" in md


def test_a_failed_evaluation_write_leaves_the_earlier_folder_whole(tmp_path, monkeypatch):
    from melp.eval import zeroshot
    from melp.train.demo import write_eval

    folder = tmp_path / "eval" / "zeroshot-ptbxl-super"
    folder.mkdir(parents=True)
    (folder / "results.json").write_text('{"macro_auroc": 0.9}')

    def half_then_fail(out_dir, result):
        (Path(out_dir) / "results.json").write_text('{"macro_auroc": 0.1}')
        raise OSError("disk full")

    monkeypatch.setattr(zeroshot, "write_zeroshot", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_eval(folder, {})
    assert json.loads((folder / "results.json").read_text()) == {"macro_auroc": 0.9}
    assert sorted(p.name for p in folder.parent.iterdir()) == [folder.name]  # no temporary left behind
