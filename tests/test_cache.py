"""The memmap cache: values, index, rejects, verify, parallel = serial, resume after kill -9."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from melp.cli import main as melp_main
from melp.data.adapters import get_adapter
from melp.data.cache import ECGCache, build_cache, verify_cache
from melp.data.preprocess import PreprocessConfig

from datafixtures import known_signal, write_cinc_mat, write_ludb, write_mimic, write_wfdb


def _mimic(tmp_path, n=6):
    reports = [["Sinus rhythm", f"Finding number {i}", "Abnormal ECG"] for i in range(n)]
    return write_mimic(tmp_path / "mimic", reports)


def _read_all(cache_dir):
    cache = ECGCache(cache_dir)
    return cache.index, cache.signals(np.arange(len(cache)))


def test_cache_values_index_and_files(tmp_path):
    root = _mimic(tmp_path, 5)
    # a record whose signal file is truncated, and one whose header lists a missing file
    dat = next((root / "files").rglob("40689240.dat"))
    dat.write_bytes(dat.read_bytes()[:1000])
    next((root / "files").rglob("40689241.dat")).unlink()
    out = tmp_path / "cache"
    counts = build_cache(get_adapter("mimic-iv-ecg"), root, out, shard_size=2, progress=False)
    assert counts["records_written"] == 3 and counts["rejected"] == 2

    cache = ECGCache(out)
    assert len(cache) == 3 and cache.dataset == "mimic-iv-ecg" and cache.tasks == {}
    assert list(cache.index["record_id"]) == ["40689238", "40689239", "40689242"]
    assert cache.index.loc[0, "report"] == "sinus rhythm. finding number 0. abnormal ecg."
    assert cache.preprocess == PreprocessConfig()
    for i, source in enumerate([0, 1, 4]):  # stored in mV, canonical order, within 1 uV quantisation
        np.testing.assert_allclose(cache.signal(i), known_signal(source), atol=1.1e-3)
    batch = cache.signals([2, 0])
    np.testing.assert_array_equal(batch[0], cache.signal(2))
    np.testing.assert_array_equal(batch[1], cache.signal(0))

    rejects = pd.read_csv(out / "rejects.csv")
    reasons = dict(zip(rejects["record"].astype(str), rejects["reason"]))
    assert set(reasons) == {"40689240", "40689241"}
    assert "40689240.dat" in reasons["40689240"] and "40689241" in reasons["40689241"]
    splits = pd.read_csv(out / "splits.csv", dtype=str)
    assert list(splits.columns) == ["record_id", "subject_id", "split"] and len(splits) == 5
    meta = json.loads((out / "meta.json").read_text())
    assert meta["dtype"] == "int16" and meta["counts"]["rejected"] == 2
    assert verify_cache(out) == []


def test_parallel_equals_serial_and_float16(tmp_path):
    root = _mimic(tmp_path, 7)
    build_cache(get_adapter("mimic-iv-ecg"), root, tmp_path / "a", workers=1, shard_size=2, progress=False)
    build_cache(get_adapter("mimic-iv-ecg"), root, tmp_path / "b", workers=2, shard_size=2, progress=False)
    ia, xa = _read_all(tmp_path / "a")
    ib, xb = _read_all(tmp_path / "b")
    pd.testing.assert_frame_equal(ia, ib)
    np.testing.assert_array_equal(xa, xb)
    build_cache(get_adapter("mimic-iv-ecg"), root, tmp_path / "c", shard_size=3, dtype="float16", progress=False)
    _, xc = _read_all(tmp_path / "c")
    np.testing.assert_allclose(xc, xa, atol=2e-3)


def test_windows_all_and_clipping(tmp_path):
    long = known_signal(1, seconds=25.0)
    long[0, 100] = 40.0  # beyond int16 at 1 uV: clipped, and counted
    write_wfdb(tmp_path / "src", "A0001", long, 500, comments=["Dx: 164889003"], gain=100.0)
    write_cinc_mat(tmp_path / "src", "A0002", known_signal(2, seconds=4.0), dx=["426783006"])
    cfg = PreprocessConfig(windows="all", seconds=10)
    counts = build_cache(get_adapter("cinc"), tmp_path / "src", tmp_path / "c", cfg, progress=False)
    cache = ECGCache(tmp_path / "c")
    assert list(zip(cache.index["record_id"], cache.index["window"])) == [("A0001", 0), ("A0001", 1), ("A0002", 0)]
    assert list(cache.index["clipped"]) == [1, 0, 0] and counts["clipped_windows"] == 1
    assert cache.signal(0)[0, 100] == pytest.approx(32.767)
    np.testing.assert_allclose(cache.signal(1), long[:, 5000:10000], atol=6e-3)  # 100/mV file
    assert np.all(cache.signal(2)[:, 2000:] == 0)  # 4 s record padded to 10 s
    assert cache.tasks["cinc"] == ["164889003", "426783006"]
    np.testing.assert_array_equal(cache.labels("cinc"), [[1, 0], [1, 0], [0, 1]])


def test_verify_finds_damage(tmp_path, capsys):
    root = _mimic(tmp_path, 4)
    out = tmp_path / "cache"
    assert melp_main(["prepare", "mimic-iv-ecg", "--root", str(root), "--out", str(out),
                      "--shard-size", "2", "--quiet"]) == 0
    assert "4 of 4 table records written" in capsys.readouterr().out
    assert melp_main(["prepare", "--verify", str(out)]) == 0
    shard = out / "shards" / "shard_00001.npy"
    arr = np.load(shard)
    np.save(shard, arr[:1])  # a shard that lost a row
    assert melp_main(["prepare", "--verify", str(out)]) == 1
    err = capsys.readouterr().err
    assert "shard_00001.npy: content does not match its checksum" in err
    meta = json.loads((out / "meta.json").read_text())
    del meta["checksums"]  # a cache built before checksums: the structure check still finds it
    (out / "meta.json").write_text(json.dumps(meta))
    problems = verify_cache(out)
    assert any("lists no checksums" in p for p in problems)
    assert any("shard_00001.npy" in p and "index expects (2, 12, 5000)" in p for p in problems)
    (out / "meta.json").unlink()
    assert any("meta.json: missing" in p for p in verify_cache(out))


def _flip(path, at=-100):
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_verify_names_each_flipped_shard_and_table(tmp_path, capsys):
    root = _mimic(tmp_path, 6)
    out = tmp_path / "cache"
    build_cache(get_adapter("mimic-iv-ecg"), root, out, shard_size=2, progress=False)
    _flip(out / "shards" / "shard_00000.npy")
    _flip(out / "shards" / "shard_00002.npy")
    _flip(out / "index.parquet", at=len((out / "index.parquet").read_bytes()) // 2)
    assert melp_main(["prepare", "--verify", str(out)]) == 1
    err = capsys.readouterr().err
    for name in ("shards/shard_00000.npy", "shards/shard_00002.npy", "index.parquet"):
        assert f"{out / name}: content does not match its checksum" in err
    assert "shard_00001" not in err
    assert melp_main(["prepare", "--verify", str(out), "--quick"]) == 1  # 3 shards: all are sampled
    with pytest.raises(ValueError, match="index.parquet: content does not match"):
        ECGCache(out)


def test_quick_verify_checks_the_tables_and_samples_shards(tmp_path, monkeypatch):
    from melp.data import cache as cache_module

    root = _mimic(tmp_path, 6)
    out = tmp_path / "cache"
    build_cache(get_adapter("mimic-iv-ecg"), root, out, shard_size=2, progress=False)
    monkeypatch.setattr(cache_module, "QUICK_SHARDS", 1)
    _flip(out / "rejects.csv", at=0)
    found = verify_cache(out, quick=True)
    assert any("rejects.csv: content does not match" in p for p in found)
    assert sum("shards/" in p for p in found) == 0


def test_other_settings_refuse_to_resume(tmp_path):
    root = _mimic(tmp_path, 3)
    build_cache(get_adapter("mimic-iv-ecg"), root, tmp_path / "c", progress=False)
    with pytest.raises(RuntimeError, match="plan.json differs"):
        build_cache(get_adapter("mimic-iv-ecg"), root, tmp_path / "c", PreprocessConfig(fs=250), progress=False)
    build_cache(get_adapter("mimic-iv-ecg"), root, tmp_path / "c", PreprocessConfig(fs=250), overwrite=True,
                progress=False)
    assert ECGCache(tmp_path / "c").preprocess.fs == 250 and verify_cache(tmp_path / "c") == []


def _prepare_cmd(root, out):
    return [sys.executable, "-m", "melp.cli", "prepare", "ludb", "--root", str(root), "--out", str(out),
            "--shard-size", "2", "--workers", "2", "--quiet"]


def test_resume_after_sigkill(tmp_path):
    root = write_ludb(tmp_path / "ludb", 10)  # 5 shards of 2 records
    subprocess.run(_prepare_cmd(root, tmp_path / "whole"), check=True, capture_output=True)

    out = tmp_path / "killed"
    env = dict(os.environ, MELP_PREPARE_SLOW_SHARD_S="0.4")  # slow shards so the kill lands mid-run
    proc = subprocess.Popen(_prepare_cmd(root, out), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.time() + 60
    while time.time() < deadline:
        if manifest.exists() and json.loads(manifest.read_text())["completed"]:
            break
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job, workers included, like kill -9 of a process group
    proc.wait()
    done_before = json.loads(manifest.read_text())["completed"]
    assert 1 <= len(done_before) < 5 and not (out / "meta.json").exists()
    with pytest.raises(FileNotFoundError, match="unfinished build"):
        ECGCache(out)
    kept = {s: (out / "shards" / f"shard_{s:05d}.npy").stat().st_mtime_ns for s in done_before}

    subprocess.run(_prepare_cmd(root, out), check=True, capture_output=True)
    for s, mtime in kept.items():  # finished shards were not redone
        assert (out / "shards" / f"shard_{s:05d}.npy").stat().st_mtime_ns == mtime
    ia, xa = _read_all(tmp_path / "whole")
    ib, xb = _read_all(out)
    pd.testing.assert_frame_equal(ia, ib)
    np.testing.assert_array_equal(xa, xb)
    assert verify_cache(out) == []


def test_real_cinc_cache(real_data, tmp_path):
    """All of cinc-smoke: CPSC .mat, Chapman, G12EC, PTB-XL and PTB (1000 Hz, 15 channels), SPH .h5."""
    import melp
    counts = build_cache(get_adapter("cinc"), real_data / "cinc-smoke", tmp_path / "c", workers=2, shard_size=16,
                         progress=False)
    assert counts["records_written"] == 79 and counts["rejected"] == 1  # SPH00005.h5 has no metadata row
    cache = ECGCache(tmp_path / "c")
    assert verify_cache(tmp_path / "c") == []
    by_id = {rid: i for i, rid in enumerate(cache.index["record_id"])}
    ref = melp.read_record(real_data / "cinc-smoke" / "G12EC" / "E00001").signal[:, :5000]
    np.testing.assert_allclose(cache.signal(by_id["G12EC/E00001"]), ref, atol=6e-4)
    ptb = next(rid for rid in by_id if rid.startswith("PTB_PTBXL/S"))  # 1000 Hz: resampled to 500 Hz
    x = cache.signal(by_id[ptb])
    assert x.shape == (12, 5000) and np.abs(x).max() > 0.1


def test_real_ludb_cache(real_data, tmp_path):
    counts = build_cache(get_adapter("ludb"), real_data / "ludb", tmp_path / "c", workers=2, progress=False)
    assert counts["records_written"] == 200 and counts["rejected"] == 0
    cache = ECGCache(tmp_path / "c")
    import wfdb
    raw = wfdb.rdrecord(str(real_data / "ludb" / "data" / "7"), physical=False)  # LUDB: 1000 counts per mV
    lead = raw.sig_name.index("ii")
    expected = (raw.d_signal[:, lead] - raw.baseline[lead]) / 1000.0
    i = int(np.nonzero(cache.index["record_id"].to_numpy() == "7")[0][0])
    np.testing.assert_allclose(cache.signal(i)[1], expected, atol=6e-4)


def test_label_columns_are_lists_even_when_empty(tmp_path):
    write_cinc_mat(tmp_path / "src", "A0001", known_signal(1), dx=[])
    write_cinc_mat(tmp_path / "src", "A0002", known_signal(2), dx=[])
    build_cache(get_adapter("cinc"), tmp_path / "src", tmp_path / "c", progress=False)
    cache = ECGCache(tmp_path / "c")
    assert cache.tasks == {"cinc": []} and list(cache.index["labels_cinc"]) == [[], []]
    assert cache.labels("cinc").shape == (2, 0) and verify_cache(tmp_path / "c") == []


def test_reject_reasons_are_grouped_by_kind():
    from melp.data.cache import reason_group
    a = reason_group("RecordError: /x/1.dat: truncated: header 1.hea declares 5000 samples, the file holds 41")
    b = reason_group("RecordError: /y/2.dat: truncated: header 2.hea declares 7500 samples, the file holds 9")
    assert a == b == "RecordError: truncated"
    assert reason_group("report shorter than 4 words") == "report shorter than 4 words"


def test_reject_kinds_replace_paths_even_with_colons():
    from melp.data.cache import reason_group
    assert reason_group("listed in /d/run:2/meta.csv but /d/run:2/a.h5 is missing") == \
        "listed in <path> but <path> is missing"
    assert reason_group("ValueError: /d/run:2/a: fails the signal-quality gate: flat") == \
        "ValueError: fails the signal-quality gate"


def test_prepare_prints_and_writes_reject_reasons_with_their_paths_intact(tmp_path, capsys):
    # a dataset folder whose path holds ':' and ',' (a reader error quotes that path)
    root = write_mimic(tmp_path / "run:2,copy" / "mimic", [["Sinus rhythm", "normal ECG"]] * 2)
    dat = next((root / "files").rglob("40689238.dat"))
    dat.write_bytes(dat.read_bytes()[:1000])
    out = tmp_path / "cache"
    assert melp_main(["prepare", "mimic-iv-ecg", "--root", str(root), "--out", str(out), "--quiet"]) == 0
    rejects = pd.read_csv(out / "rejects.csv", dtype=str)
    reason = rejects.loc[0, "reason"]
    assert str(dat) in reason and reason.startswith("RecordError: ")
    printed = capsys.readouterr().out
    assert "rejected       1  RecordError: truncated\n" in printed
    assert f"e.g. 40689238: {reason}\n" in printed  # the whole reason, path included
    assert f"every rejected record with its reason: {out / 'rejects.csv'}" in printed


def test_code15_hdf5_rows_cache(tmp_path):
    from melp.data.preprocess import prepare_signal
    from datafixtures import write_code15
    root, signals = write_code15(tmp_path / "code15", (3, 2))
    counts = build_cache(get_adapter("code15"), root, tmp_path / "c", workers=2, shard_size=2, progress=False)
    assert counts["records_written"] == 5 and counts["rejected"] == 0
    cache = ECGCache(tmp_path / "c")
    i = list(cache.index["record_id"]).index("104")
    expected = prepare_signal(signals[104], 400, cache.preprocess)[0]  # 400 Hz -> 500 Hz, 10 s
    np.testing.assert_allclose(cache.signal(i), expected, atol=6e-4)
    assert cache.index.loc[i, "labels_code15"] == ["1dAVb"]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("melp prepare: error: "), err
    return err


def test_prepare_cli_errors_name_the_problem(tmp_path, capsys):
    assert melp_main(["prepare", "ludb", "--root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "c")]) == 2
    assert f"--root {tmp_path / 'nowhere'}: no such folder" in _one_line_error(capsys)
    assert melp_main(["prepare", "ludb", "--root", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    assert f"{tmp_path / 'ludb.csv'}: missing" in _one_line_error(capsys)
    assert melp_main(["prepare"]) == 2
    assert "DATASET, --root and --out are required" in _one_line_error(capsys)


def test_prepare_out_that_is_a_file_is_a_one_line_error(tmp_path, capsys):
    root = _mimic(tmp_path, 2)
    out = tmp_path / "cache.txt"
    out.write_text("not a cache")
    assert melp_main(["prepare", "mimic-iv-ecg", "--root", str(root), "--out", str(out)]) == 2
    assert f"--out {out}: is a file, not a cache folder" in _one_line_error(capsys)
    assert out.read_text() == "not a cache"


def test_prepare_unknown_dataset_is_a_one_line_error(tmp_path, capsys):
    assert melp_main(["prepare", "ptb-xl", "--root", str(tmp_path), "--out", str(tmp_path / "c")]) == 2
    err = _one_line_error(capsys)
    assert "unknown dataset 'ptb-xl'" in err and "ptbxl" in err
    assert not (tmp_path / "c").exists()


def test_missing_leads_rejected_or_zero_filled(tmp_path):
    nan_lead = known_signal(1)
    nan_lead[7] = np.nan  # V2 all NaN, as in some MIMIC-IV-ECG records
    write_wfdb(tmp_path / "src", "A0001", nan_lead, 500, comments=["Dx: 426783006"])
    write_wfdb(tmp_path / "src", "A0002", known_signal(2), 500, comments=["Dx: 426783006"])
    counts = build_cache(get_adapter("cinc"), tmp_path / "src", tmp_path / "strict", progress=False)
    assert counts["records_written"] == 1 and counts["rejected"] == 1
    rejects = pd.read_csv(tmp_path / "strict" / "rejects.csv")
    assert list(rejects["record"]) == ["A0001"] and "missing leads ['V2']" in rejects["reason"][0]

    build_cache(get_adapter("cinc"), tmp_path / "src", tmp_path / "lenient", allow_missing_leads=True,
                progress=False)
    cache = ECGCache(tmp_path / "lenient")
    assert list(cache.index["missing_leads"]) == ["V2", ""]
    x = cache.signal(0)
    assert np.all(x[7] == 0) and np.allclose(x[6], known_signal(1)[6], atol=6e-4)


@pytest.mark.parametrize("policy", ["reject", "flag"])
def test_quality_gate_rejects_or_flags_damaged_real_records(real_data, tmp_path, policy):
    from damage import DAMAGE, damaged_copy, intact_copy

    src = tmp_path / "src"
    records = [intact_copy(real_data / "ludb" / "data" / "1.hea", src)]
    records += [damaged_copy(real_data / "ludb" / "data" / "1.hea", src, kind) for kind in DAMAGE]
    for hea in records:  # a CinC-style diagnosis line, so that the cinc adapter lists them
        hea.write_text(hea.read_text() + "# Dx: 426783006\n")
    counts = build_cache(get_adapter("cinc"), src, tmp_path / "c", quality=policy, progress=False)
    index = ECGCache(tmp_path / "c").index
    quality = dict(zip(index["record_id"], index["quality"]))
    rejects = pd.read_csv(tmp_path / "c" / "rejects.csv")
    assert quality["1"] == "ok"
    if policy == "reject":
        assert set(quality) == {"1"}
        gate = rejects[rejects["reason"].str.contains("signal-quality gate")]
        assert set(gate["record"]) == set(DAMAGE)
    else:
        assert {k: v.split(":")[0] for k, v in quality.items()} == {"1": "ok", **{kind: "fail" for kind in DAMAGE}}
        assert counts["quality_flagged"] == len(DAMAGE)
    assert verify_cache(tmp_path / "c") == []


def test_a_second_writer_is_refused_while_the_first_holds_the_lock(tmp_path, capsys):
    from melp.data.cache import writer_lock

    root = _mimic(tmp_path, 2)
    out = tmp_path / "cache"
    with writer_lock(out):  # as a running `melp prepare` holds it
        code = melp_main(["prepare", "mimic-iv-ecg", "--root", str(root), "--out", str(out), "--quiet"])
        assert code == 2 and "another `melp prepare` is writing this cache" in capsys.readouterr().err
    assert melp_main(["prepare", "mimic-iv-ecg", "--root", str(root), "--out", str(out), "--quiet"]) == 0
    assert verify_cache(out) == []
