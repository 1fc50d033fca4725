"""Every evaluation command end to end on a tiny (untrained) model and small simulated sets, and
zero-shot on real records (LUDB diagnoses; cinc-smoke through the generic CinC adapter) when
MELP_REAL_DATA points to the shared folder (a few records copied into tmp_path in their layout).

The numbers need not be good; the plumbing must be exact: what a command prints and saves agrees
with an independent recomputation (scikit-learn on the saved per-record scores, the model's own
zero_shot on the same windows, sacrebleu on the saved predictions).
"""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from melp.cli import main
from melp.eval.outputs import read_scores


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    import melp

    path = tmp_path_factory.mktemp("model") / "tiny"
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    melp.MELP.from_preset("tiny").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(model_dir):
    import melp

    return melp.load(model_dir)


@pytest.fixture
def reuse_model(model, monkeypatch):
    """Commands get the already-loaded fixture model (loading is tested by the zero-shot and classify
    tests); this keeps the suite fast."""
    import melp.eval.embed

    monkeypatch.setattr(melp.eval.embed, "load_model", lambda path, needs_text=None, precision="fp32", compile=False: model.set_precision(precision, compile))
    return model


@pytest.fixture(scope="module")
def cinc_folder(tmp_path_factory):
    from melp import synth

    root = tmp_path_factory.mktemp("cinc")
    synth.export("cinc", root, 24, seed=1)
    return root


@pytest.fixture(scope="module")
def pairs_cache(tmp_path_factory):
    from melp import synth
    from melp.data.adapters import get_adapter
    from melp.data.cache import build_cache

    base = tmp_path_factory.mktemp("mimic")
    synth.export("mimic-iv-ecg", base / "raw", 16, seed=2)
    build_cache(get_adapter("mimic-iv-ecg"), base / "raw", base / "cache", progress=False)
    return base / "cache"


def _check_saved_aurocs(folder, result, prefix=""):
    """The per-class AUROCs in results.json equal sklearn's on the saved scores."""
    ids, classes, labels, scores = read_scores(folder / f"{prefix}scores.csv")
    assert len(ids) == result["n"] and classes == list(result["per_class"])
    recomputed = []
    for c, name in enumerate(classes):
        saved = result["per_class"][name]["auroc"]
        if 0 < labels[:, c].sum() < len(labels):
            value = roc_auc_score(labels[:, c], scores[:, c])
            assert saved == pytest.approx(value, abs=1e-9), name
            recomputed.append(value)
        else:
            assert saved is None and name in {s["class"] for s in result["skipped"]}
    assert recomputed, "no class could be scored: the fixture is too small"
    assert result["macro_auroc"] == pytest.approx(np.mean(recomputed), abs=1e-9)
    return labels, scores


def test_zeroshot_on_a_cinc_folder(model_dir, model, cinc_folder, tmp_path, capsys):
    out = tmp_path / "zs"
    assert main(["zeroshot", "--model", str(model_dir), "--dataset", "cinc", "--root", str(cinc_folder),
                 "--out", str(out), "--bootstrap", "50"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    labels, scores = _check_saved_aurocs(out, result)
    assert f"**{result['macro_auroc'] * 100:.2f}**" in printed
    assert {"results.md", "roc.png", "auroc_bars.png"} <= {p.name for p in out.iterdir()}
    # the scores are the model's own zero-shot cosine similarities on the same records
    from melp.eval.data import load_eval_set

    data = load_eval_set(cinc_folder, "cinc", model.config.preprocess)
    direct = model.zero_shot(data.signals(np.arange(5)), [result["descriptions"][c] for c in result["classes"]])
    np.testing.assert_allclose(scores[:5], direct, atol=1e-5)


def test_zeroshot_on_a_prepared_ptbxl_cache_reads_the_test_split(model_dir, reuse_model, tmp_path):
    from melp import synth
    from melp.data.cache import ECGCache

    synth.export("ptbxl", tmp_path / "ptbxl", 100, seed=6)
    assert main(["prepare", "ptbxl", "--root", str(tmp_path / "ptbxl"), "--out", str(tmp_path / "cache")]) in (0, None)
    out = tmp_path / "zs"
    assert main(["zeroshot", "--model", str(model_dir), "--dataset", "ptbxl-super", "--root", str(tmp_path / "cache"),
                 "--out", str(out), "--bootstrap", "20"]) == 0
    result = json.loads((out / "results.json").read_text())
    index = ECGCache(tmp_path / "cache").index
    test_ids = set(index.loc[(index["split"] == "test") & (index["labels_super"].map(len) > 0), "record_id"])
    ids, _, _, scores = read_scores(out / "scores.csv")
    assert result["split"] == "test" and set(ids) == test_ids
    _check_saved_aurocs(out, result)
    # the same folder read as distributed (only its test split is read) gives the same scores
    folder_out = tmp_path / "zs_folder"
    assert main(["zeroshot", "--model", str(model_dir), "--dataset", "ptbxl-super", "--root", str(tmp_path / "ptbxl"),
                 "--out", str(folder_out), "--bootstrap", "20"]) == 0
    folder_ids, _, _, folder_scores = read_scores(folder_out / "scores.csv")
    order = [folder_ids.index(i) for i in ids]
    np.testing.assert_allclose(folder_scores[order], scores, atol=2e-3)  # the cache stores int16 (1 uV)


def test_zeroshot_synth_lists_classes_without_positives(model_dir, reuse_model, tmp_path):
    out = tmp_path / "zs"
    assert main(["zeroshot", "--model", str(model_dir), "--dataset", "synth", "--n", "20",
                 "--out", str(out), "--bootstrap", "20"]) == 0
    result = json.loads((out / "results.json").read_text())
    _check_saved_aurocs(out, result)
    from melp import synth

    assert result["classes"] == list(synth.FINDINGS) and result["n"] == 20
    skipped = {s["class"] for s in result["skipped"]}
    assert skipped == {c for c, v in result["per_class"].items() if v["auroc"] is None}


def test_probe_seeds_and_saved_scores(model_dir, reuse_model, tmp_path, capsys):
    out = tmp_path / "probe"
    assert main(["probe", "--model", str(model_dir), "--dataset", "synth", "--n", "40", "--fraction", "0.1",
                 "--seeds", "2", "--epochs", "3", "--bootstrap", "20", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "results.json").read_text())
    macros = []
    for seed_result in result["per_seed"]:
        _check_saved_aurocs(out, seed_result, prefix=f"seed{seed_result['seed']}_")
        macros.append(seed_result["macro_auroc"])
    assert result["macro_auroc_mean"] == pytest.approx(np.mean(macros))
    assert result["macro_auroc_std"] == pytest.approx(np.std(macros, ddof=1))
    assert f"{result['macro_auroc_mean'] * 100:.2f} ± {result['macro_auroc_std'] * 100:.2f}" in printed
    # sigmoid scores; the 10% subset is the same for the same seed, different across seeds
    _, _, _, scores = read_scores(out / "seed0_scores.csv")
    assert ((scores > 0) & (scores < 1)).all()
    train_ids = [r["train_record_ids"] for r in result["per_seed"]]
    assert train_ids[0] != train_ids[1]


def test_finetune_command_leaves_the_given_model_untouched(model_dir, model, reuse_model, tmp_path):
    import torch

    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("ecg_encoder")}
    out = tmp_path / "ft"
    assert main(["finetune", "--model", str(model_dir), "--dataset", "synth", "--n", "20", "--fraction", "1.0",
                 "--epochs", "1", "--batch-size", "16", "--bootstrap", "10", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    seed = result["per_seed"][0]
    assert seed["epochs_run"] == 1 and result["protocol"] == "finetune"
    _check_saved_aurocs(out, seed, prefix="seed0_")
    for k, v in model.state_dict().items():
        if k in before:
            assert torch.equal(v, before[k]), k


def test_retrieve_on_a_cache(model_dir, model, reuse_model, pairs_cache, tmp_path):
    out = tmp_path / "ret"
    assert main(["retrieve", "--model", str(model_dir), "--root", str(pairs_cache), "--split", "all",
                 "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    # independent recomputation with the model's public API
    from melp.data.cache import ECGCache

    cache = ECGCache(pairs_cache)
    reports = cache.index["report"].tolist()
    sim = model.embed_ecg(cache.signals(np.arange(len(cache))), fs=cache.preprocess.fs) @ model.embed_text(reports).T
    same = np.array([[a.lower().strip() == b.lower().strip() for b in reports] for a in reports])
    for k in (1, 5, 10):
        top = np.argsort(-sim, axis=1)[:, :k]
        assert result[f"ecg_to_report_r{k}"] == pytest.approx(np.mean([same[i, top[i]].any() for i in range(len(sim))]))
        top = np.argsort(-sim.T, axis=1)[:, :k]
        assert result[f"report_to_ecg_r{k}"] == pytest.approx(np.mean([same[i, top[i]].any() for i in range(len(sim))]))
    assert (out / "results.md").read_text().count("|") > 8 and (out / "recall.png").is_file()


def test_generate_on_a_cache(model_dir, reuse_model, pairs_cache, tmp_path):
    import pandas as pd
    import sacrebleu

    out = tmp_path / "gen"
    assert main(["generate", "--model", str(model_dir), "--root", str(pairs_cache), "--split", "all",
                 "--max-records", "3", "--beams", "2", "--max-len", "6", "--out", str(out)]) == 0
    result = json.loads((out / "results.json").read_text())
    predictions = pd.read_csv(out / "predictions.csv", keep_default_na=False)
    assert len(predictions) == result["n"] == 3
    bleu = sacrebleu.corpus_bleu(predictions["generated"].str.lower().tolist(),
                                 [predictions["reference"].str.lower().tolist()]).score / 100
    assert result["bleu4"] == pytest.approx(bleu)
    assert result["rouge_l"] == pytest.approx(predictions["rouge_l"].mean())
    assert (out / "rouge_l.png").is_file()


def test_text_metrics_of_perfect_generation():
    from melp.eval.generation import text_metrics

    refs = ["sinus rhythm. left axis deviation. abnormal ecg.", "atrial fibrillation. abnormal ecg."]
    perfect = text_metrics(refs, refs)
    assert perfect["bleu4"] == pytest.approx(1.0) and perfect["rouge_l"] == pytest.approx(1.0)
    assert text_metrics(["normal ecg."] * 2, refs)["rouge_l"] < 0.5


def test_bench_all_summary_matches_its_runs(model_dir, reuse_model, tmp_path, capsys):
    config = tmp_path / "bench.yaml"
    config.write_text("seeds: 2\nbootstrap: 10\ntasks:\n  - {task: synth, n: 30, seed: 4}\n"
                      "protocols: [zeroshot, probe-0.1, probe-1.0]\nprobe: {epochs: 2}\n")
    out = tmp_path / "bench"
    assert main(["bench-all", "--model", str(model_dir), "--config", str(config), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    summary = json.loads((out / "results.json").read_text())
    assert [(r["protocol"], r["fraction"]) for r in summary["rows"]] == [("zeroshot", None), ("probe", 0.1), ("probe", 1.0)]
    zs = json.loads((out / "synth" / "zeroshot" / "results.json").read_text())
    probe = json.loads((out / "synth" / "probe-0.1" / "results.json").read_text())
    assert summary["rows"][0]["macro_auroc"] == zs["macro_auroc"]
    assert summary["rows"][1]["macro_auroc"] == probe["macro_auroc_mean"]
    assert "## Zero-shot" in printed and "## Linear probe" in printed and "synth 10%" in printed
    assert (out / "summary.png").is_file()


def test_bench_all_reports_a_failing_run_and_goes_on(model, tmp_path):
    from melp.eval.bench_all import run_bench

    config = {"seeds": 1, "bootstrap": 0, "protocols": [("zeroshot", None)],
              "tasks": [{"task": "synth", "n": 12, "split": "holdout"},
                        {"task": "synth", "n": 12, "seed": 1}]}
    summary = run_bench(model, config, tmp_path)
    assert "no record in split 'holdout'" in summary["rows"][0]["error"]
    assert summary["rows"][1]["macro_auroc"] is not None
    assert "Failed: synth zeroshot" in (tmp_path / "results.md").read_text()


def test_bench_all_rejects_bad_protocols(tmp_path):
    from melp.eval.bench_all import load_config

    config = tmp_path / "bad.yaml"
    config.write_text("tasks: [{task: synth}]\nprotocols: [probe-2]\n")
    with pytest.raises(ValueError, match="probe-2"):
        load_config(config)


@pytest.fixture(scope="module")
def long_record(tmp_path_factory):
    """25 s at 250 Hz with only 8 of the 12 leads, written as WFDB."""
    import wfdb

    from melp import synth

    batch = synth.simulate(3, seed=5)
    signal = np.concatenate([batch.signals[0], batch.signals[1], batch.signals[2]], axis=1)[:, ::2][:, :6250]
    keep = [0, 1, 6, 7, 8, 9, 10, 11]  # I, II, V1-V6: III, aVR, aVL, aVF missing
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    folder = tmp_path_factory.mktemp("record")
    wfdb.wrsamp("rec", fs=250, units=["mV"] * 8, sig_name=names, p_signal=signal[keep].T.astype(np.float64),
                fmt=["16"] * 8, write_dir=str(folder))
    return folder / "rec"


def test_classify_ranks_labels_over_windows(model_dir, model, long_record, capsys):
    labels = ["atrial fibrillation", "left bundle branch block", "normal sinus rhythm"]
    with pytest.warns(UserWarning, match="III,aVR,aVL,aVF zero-filled"):
        assert main(["classify", str(long_record), "--model", str(model_dir), "--labels", *labels]) == 0
    printed = capsys.readouterr().out
    assert "2 window(s)" in printed
    rows = re.findall(r"^\s+(\d)\s+(.+?)\s+([+-]\d\.\d{4})$", printed, flags=re.M)
    assert [int(r[0]) for r in rows] == [1, 2, 3]
    # independent: read, resample to 500 Hz, cut two 10 s windows, score each, average
    import melp
    from melp.data.preprocess import resample

    record = melp.read_record(long_record, allow_missing_leads=True)
    x = resample(record.signal.astype(np.float64), 250, 500)
    windows = np.stack([x[:, :5000], x[:, 5000:10000]])
    expected = model.zero_shot(windows, labels).mean(0)
    ranked = sorted(zip(labels, expected), key=lambda t: -t[1])
    assert [r[1] for r in rows] == [name for name, _ in ranked]
    np.testing.assert_allclose([float(r[2]) for r in rows], [v for _, v in ranked], atol=2e-4)


def test_report_prints_one_report_per_window(model_dir, reuse_model, long_record, capsys):
    with pytest.warns(UserWarning, match="zero-filled"):
        assert main(["report", str(long_record), "--model", str(model_dir), "--beams", "1", "--max-len", "5"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert [line.split("]")[0] for line in printed] == ["[0-10 s", "[10-20 s"]


# ----------------------------------------------------------------------------- real records


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


def test_zeroshot_on_real_ludb_records(real_data, model_dir, reuse_model, tmp_path):
    src = real_data / "ludb"
    root = tmp_path / "ludb"
    (root / "data").mkdir(parents=True)
    ids = list(range(1, 11))
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


def test_zeroshot_on_real_cinc_records(real_data, model_dir, reuse_model, tmp_path):
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


@pytest.mark.parametrize("kind", ["random", "zeros", "saturated", "huge"])
def test_single_record_commands_refuse_a_damaged_record(real_data, model_dir, reuse_model, tmp_path, capsys, kind):
    from damage import damaged_copy

    record = damaged_copy(real_data / "ludb" / "data" / "1.hea", tmp_path, kind)
    for command in (["classify", str(record), "--labels", "atrial fibrillation", "sinus rhythm"],
                    ["report", str(record), "--beams", "1", "--max-len", "4"]):
        assert main([*command, "--model", str(model_dir)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "fails the signal-quality gate" in err[0] and str(record) in err[0]
    with pytest.warns(UserWarning, match="signal quality"):
        assert main(["classify", str(record), "--model", str(model_dir), "--labels", "a", "b", "--force"]) == 0


def test_classify_passes_a_real_record_and_refuses_bad_labels(real_data, model_dir, reuse_model, tmp_path, capsys):
    from damage import intact_copy

    record = intact_copy(real_data / "ludb" / "data" / "1.hea", tmp_path)
    assert main(["classify", str(record), "--model", str(model_dir), "--labels", "a", "b"]) == 0
    for labels in (["a", ""], ["a", "a"]):
        assert main(["classify", str(record), "--model", str(model_dir), "--labels", *labels]) == 2
        assert "labels" in capsys.readouterr().err


EVAL_COMMANDS = {  # cheap arguments of every command that writes an --out folder
    "zeroshot": ["--dataset", "synth", "--n", "20", "--bootstrap", "10"],
    "probe": ["--dataset", "synth", "--n", "40", "--fraction", "0.1", "--epochs", "1", "--bootstrap", "10"],
    "finetune": ["--dataset", "synth", "--n", "20", "--epochs", "1", "--batch-size", "16", "--bootstrap", "10"],
    "retrieve": ["--root", "PAIRS", "--split", "all"],
    "generate": ["--root", "PAIRS", "--split", "all", "--max-records", "2", "--beams", "1", "--max-len", "4"],
    "bench-all": ["--config", "BENCH"],
}


def _command(name, model_dir, pairs_cache, tmp_path, out):
    config = tmp_path / "bench.yaml"
    config.write_text("bootstrap: 10\ntasks:\n  - {task: synth, n: 20}\nprotocols: [zeroshot]\n")
    args = [{"PAIRS": str(pairs_cache), "BENCH": str(config)}.get(a, a) for a in EVAL_COMMANDS[name]]
    return [name, "--model", str(model_dir), *args, "--out", str(out)]


@pytest.mark.parametrize("name", list(EVAL_COMMANDS))
def test_a_run_killed_while_writing_leaves_no_partial_output(name, model_dir, reuse_model, pairs_cache,
                                                             tmp_path, monkeypatch):
    from melp.eval import outputs

    runs = tmp_path / "runs"
    earlier, fresh = runs / "earlier", runs / "fresh"
    assert main(_command(name, model_dir, pairs_cache, tmp_path, earlier)) == 0
    before = {p.relative_to(earlier): p.read_bytes() for p in earlier.rglob("*") if p.is_file()}
    write_json = outputs.write_json

    def dies_after_writing(path, obj):  # a file written, then the run dies: the folder is half-written
        write_json(path, obj)
        raise RuntimeError("killed while writing")

    monkeypatch.setattr(outputs, "write_json", dies_after_writing)
    for out in (earlier, fresh):
        with pytest.raises(RuntimeError, match="killed while writing"):
            main(_command(name, model_dir, pairs_cache, tmp_path, out))
    assert sorted(p.name for p in runs.iterdir()) == ["earlier"]  # no fresh/, no temporary sibling
    assert {p.relative_to(earlier): p.read_bytes() for p in earlier.rglob("*") if p.is_file()} == before


def test_out_that_is_not_an_earlier_output_is_refused_before_any_work(model_dir, tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    assert main(_command("zeroshot", model_dir, None, tmp_path, out)) == 2
    assert "not an earlier output" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["notes.txt"]


def test_probe_batch_size_sets_the_feature_batch(model_dir, reuse_model, tmp_path, monkeypatch):
    from melp.eval import embed, probe

    seen = []
    real = embed.embed_set

    def recording(model, data, what="embedding", batch_size=64, desc=None):
        seen.append(batch_size)
        return real(model, data, what, batch_size, desc)

    monkeypatch.setattr(probe, "embed_set", recording)
    assert main(["probe", "--model", str(model_dir), "--dataset", "synth", "--n", "24", "--fraction", "1.0",
                 "--epochs", "1", "--bootstrap", "5", "--batch-size", "7", "--out", str(tmp_path / "p")]) == 0
    assert seen == [7]
