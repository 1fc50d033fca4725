"""Record readers on small fixtures written in each real on-disk layout."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import wfdb

import melp
from melp.data.leads import CANONICAL_LEADS
from melp.data.readers import Record, RecordError, read_code15, read_record

MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]
FS = 500
T = 1000


def digital_signal(n_leads: int = 12, n: int = T, seed: int = 0) -> np.ndarray:
    """Distinct int16 waveforms (n, n_leads): lead k is offset by 100 k so mix-ups are visible."""
    rng = np.random.default_rng(seed)
    t = np.arange(n)[:, None]
    wave = 800 * np.sin(2 * np.pi * (1 + np.arange(n_leads)) * t / n) + 100 * np.arange(n_leads)
    return (wave + rng.integers(-20, 20, size=(n, n_leads))).astype(np.int16)


def write_wfdb(tmp_path, name, d_signal, sig_name, gain=200.0, baseline=0, units="mV", fmt="16",
               comments=None, fs=FS):
    """``gain``: one for every lead, or one per lead."""
    n = d_signal.shape[1]
    gains = list(gain) if np.ndim(gain) else [gain] * n
    wfdb.wrsamp(name, fs=fs, units=[units] * n, sig_name=list(sig_name), d_signal=d_signal,
                fmt=[fmt] * n, adc_gain=gains, baseline=[baseline] * n,
                comments=comments or [], write_dir=str(tmp_path))
    return tmp_path / name


def expected_mv(d_signal, names, gain=200.0, baseline=0):
    """(12, T) mV in canonical order, computed independently of the reader."""
    physical = (d_signal.astype(np.float64) - baseline) / gain
    lower = [n.lower() for n in names]
    return np.stack([physical[:, lower.index(lead.lower())] for lead in CANONICAL_LEADS])


def write_cinc_mat(tmp_path, name, val, names, gain=1000.0, baseline=0, record_line=None, comments=()):
    """A PhysioNet/CinC record: ``name.mat`` with key ``val`` and a handwritten ``name.hea``."""
    scipy.io.savemat(tmp_path / f"{name}.mat", {"val": val}, format="4")
    n_sig, n = val.shape
    lines = [record_line or f"{name} {n_sig} {FS} {n}"]
    lines += [f"{name}.mat 16+24 {gain:g}({baseline})/mV 16 0 {val[i, 0]} 0 0 {lead}" for i, lead in enumerate(names)]
    lines += [f"#{c}" for c in comments]
    (tmp_path / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return tmp_path / f"{name}.hea"


# ----------------------------------------------------------------------------- WFDB .dat


def test_wfdb_dat_reorders_mimic_lead_order_and_matches_rdsamp(tmp_path):
    d = digital_signal()
    base = write_wfdb(tmp_path, "40689238", d, MIMIC_ORDER, gain=200.0, baseline=10,
                      comments=["Age: 61", "Sex: Male", "Dx: 426783006,164889003"])
    record = read_record(base)
    assert isinstance(record, Record)
    assert record.signal.dtype == np.float32 and record.signal.shape == (12, T)
    assert record.leads == list(CANONICAL_LEADS) and record.fs == FS
    np.testing.assert_allclose(record.signal, expected_mv(d, MIMIC_ORDER, 200.0, 10), atol=1e-6)
    reference, fields = wfdb.rdsamp(str(base))
    assert fields["sig_name"][4] == "aVF"
    np.testing.assert_allclose(record.signal[5], reference[:, 4], atol=1e-6)  # aVF moved to slot 5
    assert record.meta["age"] == 61 and record.meta["sex"] == "M"
    assert record.meta["dx"] == ["426783006", "164889003"]
    assert record.meta["comments"] == ["Age: 61", "Sex: Male", "Dx: 426783006,164889003"]
    assert record.meta["notes"] == [] and record.meta["flat_leads"] == []


@pytest.mark.parametrize("suffix", ["", ".hea", ".dat"])
def test_path_may_name_record_header_or_signal_file(tmp_path, suffix):
    d = digital_signal()
    base = write_wfdb(tmp_path, "rec", d, CANONICAL_LEADS)
    record = melp.read_record(str(base) + suffix)
    np.testing.assert_allclose(record.signal, expected_mv(d, CANONICAL_LEADS), atol=1e-6)


def test_lowercase_names_and_ludb_style_comments(tmp_path):
    names = ["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"]
    d = digital_signal(seed=1)
    comments = ["<age>: 51", "<sex>: F", "<diagnoses>:", "Rhythm: Sinus bradycardia."]
    record = read_record(write_wfdb(tmp_path, "1", d, names, gain=1716.0, comments=comments))
    np.testing.assert_allclose(record.signal, expected_mv(d, names, 1716.0), atol=1e-6)
    assert record.meta["age"] == 51 and record.meta["sex"] == "F"
    assert record.meta["comments"] == comments


def _limb_consistent_counts(seed: int = 3) -> np.ndarray:
    """Counts (T, 12) in one unit, as a recorder writes them: III, aVR, aVL, aVF derived from I and II."""
    d = digital_signal(seed=seed).astype(np.int64)
    i, ii = d[:, 0], d[:, 1]
    d[:, 2], d[:, 3], d[:, 4], d[:, 5] = ii - i, -(i + ii) // 2, i - ii // 2, ii - i // 2
    return d.astype(np.int16)


def _count_ranges(d: np.ndarray) -> np.ndarray:
    """Each lead's range of counts: the gains that make every lead read 1 mV peak to peak (LUDB 1.0.1)."""
    return (d.max(0).astype(np.int64) - d.min(0)).astype(float)


def test_gains_that_only_scale_each_lead_to_unit_range_are_replaced_by_one_gain(tmp_path):
    # LUDB 1.0.1 writes each lead's count range as its gain, so every lead reads 1 mV peak to peak
    # (and III != II - I in mV). The counts share one unit: they are read at 1000 per mV.
    d = _limb_consistent_counts()
    base = write_wfdb(tmp_path, "1", d, CANONICAL_LEADS, gain=_count_ranges(d))
    reference, _ = wfdb.rdsamp(str(base))
    assert np.allclose(np.ptp(reference, axis=0), 1.0)  # what the header's gains say
    record = read_record(base)
    np.testing.assert_allclose(record.signal, d.T / 1000.0, atol=1e-6)
    x = record.signal
    assert np.abs(x[2] - (x[1] - x[0])).max() < 1e-6
    assert any("each lead scaled to 1 mV" in note and "1000 counts per mV" in note for note in record.meta["notes"])


def test_per_lead_gains_are_kept_when_the_counts_do_not_share_one_unit(tmp_path):
    d = digital_signal(seed=4)  # independent leads: III != II - I in counts
    gains = _count_ranges(d)
    record = read_record(write_wfdb(tmp_path, "2", d, CANONICAL_LEADS, gain=gains))
    np.testing.assert_allclose(record.signal, (d / gains).T, atol=1e-6)
    assert record.meta["notes"] == []


def test_microvolt_header_is_converted_to_millivolts(tmp_path):
    d = digital_signal(seed=2)
    record = read_record(write_wfdb(tmp_path, "uv", d, CANONICAL_LEADS, gain=1.0, units="uV"))
    np.testing.assert_allclose(record.signal, expected_mv(d, CANONICAL_LEADS, 1.0) / 1000.0, atol=1e-6)
    reference, fields = wfdb.rdsamp(str(tmp_path / "uv"))
    assert fields["units"][0] == "uV"
    np.testing.assert_allclose(record.signal, reference.T / 1000.0, atol=1e-6)


def _recode_format_16(base, fmt):
    """wfdb cannot write formats 61 and 160: recode a format-16 record by hand (wfdb reads both)."""
    dat, hea = base.with_suffix(".dat"), base.with_suffix(".hea")
    values = np.fromfile(dat, dtype="<i2")
    recoded = values.astype(">i2") if fmt == "61" else (values.astype(np.int32) + 32768).astype("<u2")
    recoded.tofile(dat)
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join([lines[0]] + [line.replace(".dat 16 ", f".dat {fmt} ", 1) for line in lines[1:]]) + "\n")


@pytest.mark.parametrize("fmt", ["80", "160", "24", "32", "61"])
def test_other_numpy_formats_match_rdsamp(tmp_path, fmt):
    d = digital_signal(seed=8)
    if fmt == "80":
        d = (d // 16).astype(np.int16)  # 8-bit range
    base = write_wfdb(tmp_path, f"f{fmt}", d, MIMIC_ORDER, fmt=fmt if fmt in ("80", "24", "32") else "16")
    if fmt in ("61", "160"):
        _recode_format_16(base, fmt)
    record = read_record(base)
    np.testing.assert_allclose(record.signal, expected_mv(d, MIMIC_ORDER), atol=1e-6)
    reference, _ = wfdb.rdsamp(str(base))
    np.testing.assert_allclose(record.signal[0], reference[:, 0], atol=1e-6)


def test_format_212_goes_through_wfdb(tmp_path):
    d = (digital_signal(seed=3) // 16).astype(np.int16)  # 12-bit range
    base = write_wfdb(tmp_path, "f212", d, MIMIC_ORDER, fmt="212")
    record = read_record(base)
    np.testing.assert_allclose(record.signal, expected_mv(d, MIMIC_ORDER), atol=1e-6)


def test_frank_leads_kept_out_of_the_twelve(tmp_path):
    names = [*["i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6"], "vx", "vy", "vz"]
    d = digital_signal(n_leads=15, seed=4)
    record = read_record(write_wfdb(tmp_path, "s0010_re", d, names, gain=2000.0, fs=1000))
    assert record.signal.shape == (12, T) and record.fs == 1000
    assert sorted(record.meta["extra_channels"]) == ["vx", "vy", "vz"]
    np.testing.assert_allclose(record.meta["extra_channels"]["vy"], d[:, 13] / 2000.0, atol=1e-6)
    np.testing.assert_allclose(record.signal, expected_mv(d[:, :12], names[:12], 2000.0), atol=1e-6)


# ----------------------------------------------------------------------------- CinC .mat


def test_cinc_mat_uses_header_gain_and_baseline(tmp_path):
    val = digital_signal(seed=5).T.copy()
    hea = write_cinc_mat(tmp_path, "JS00001", val, MIMIC_ORDER, gain=1000.0, baseline=-7,
                         comments=["Age: 85", "Sex: Female", "Dx: 164889003"])
    record = read_record(hea)
    np.testing.assert_allclose(record.signal, expected_mv(val.T, MIMIC_ORDER, 1000.0, -7), atol=1e-6)
    reference, _ = wfdb.rdsamp(str(tmp_path / "JS00001"))
    np.testing.assert_allclose(record.signal[0], reference[:, 0], atol=1e-6)
    assert read_record(tmp_path / "JS00001.mat").meta["dx"] == ["164889003"]
    assert record.meta["age"] == 85 and record.meta["sex"] == "F"


def test_record_line_naming_the_mat_file_is_repaired(tmp_path):
    val = digital_signal(seed=6).T.copy()
    hea = write_cinc_mat(tmp_path, "E07500", val, CANONICAL_LEADS, record_line=f"E07500.mat 12 500 {T}")
    with pytest.raises(Exception):
        wfdb.rdheader(str(tmp_path / "E07500"))  # the damage is real: wfdb refuses it
    record = read_record(hea)
    np.testing.assert_allclose(record.signal, expected_mv(val.T, CANONICAL_LEADS, 1000.0), atol=1e-6)
    assert any("E07500.mat" in note for note in record.meta["notes"])


def test_mat_with_fewer_samples_than_header_is_rejected(tmp_path):
    val = digital_signal(seed=7).T.copy()
    hea = write_cinc_mat(tmp_path, "A0001", val, CANONICAL_LEADS, record_line=f"A0001 12 500 {T + 50}")
    with pytest.raises(RecordError, match=rf"A0001\.mat.*{T} samples.*declares {T + 50}"):
        read_record(hea)


# ----------------------------------------------------------------------------- damaged WFDB input


def test_truncated_dat_is_rejected_naming_expected_and_found_sizes(tmp_path):
    base = write_wfdb(tmp_path, "trunc", digital_signal(), CANONICAL_LEADS)
    dat = tmp_path / "trunc.dat"
    dat.write_bytes(dat.read_bytes()[: 12 * 2 * 600 + 5])
    with pytest.raises(RecordError, match=r"trunc\.dat: truncated.*24000 bytes.*14405.*600 whole samples"):
        read_record(base)


def test_corrupted_samples_fail_the_header_checksum(tmp_path):
    base = write_wfdb(tmp_path, "flip", digital_signal(), CANONICAL_LEADS)
    dat = tmp_path / "flip.dat"
    raw = bytearray(dat.read_bytes())
    raw[2 * 12 * 500 + 2 * 3 + 1] ^= 0x10  # one byte of lead aVR at sample 500
    dat.write_bytes(bytes(raw))
    record = read_record(base)
    assert any("['aVR'] do not match the header's checksums" in note for note in record.meta["notes"])
    with pytest.raises(RecordError, match=r"flip\.hea: samples of \['aVR'\].*checksums"):
        read_record(base, strict=True)


def test_trailing_bytes_beyond_the_header_length_are_noted(tmp_path):
    d = digital_signal()
    base = write_wfdb(tmp_path, "tail", d, CANONICAL_LEADS)
    with open(tmp_path / "tail.dat", "ab") as f:
        f.write(b"\x00" * 10)
    record = read_record(base)
    np.testing.assert_allclose(record.signal, expected_mv(d, CANONICAL_LEADS), atol=1e-6)
    assert any("10 bytes beyond" in note for note in record.meta["notes"])


def _rewrite_record_line(hea, nsig):
    lines = hea.read_text().splitlines()
    fields = lines[0].split()
    fields[1] = str(nsig)
    hea.write_text("\n".join([" ".join(fields), *lines[1:]]) + "\n")


def test_signal_count_disagreeing_with_lines_is_repaired_when_data_fits_the_lines(tmp_path):
    d = digital_signal()
    base = write_wfdb(tmp_path, "count", d, CANONICAL_LEADS)
    _rewrite_record_line(tmp_path / "count.hea", 11)
    record = read_record(base)
    np.testing.assert_allclose(record.signal, expected_mv(d, CANONICAL_LEADS), atol=1e-6)
    assert any("declares 11 signals but 12 signal lines" in note for note in record.meta["notes"])


def test_signal_count_disagreeing_with_lines_and_data_is_rejected(tmp_path):
    base = write_wfdb(tmp_path, "count", digital_signal(n_leads=13), [*CANONICAL_LEADS, "vx"])
    hea = tmp_path / "count.hea"
    lines = hea.read_text().splitlines()
    hea.write_text("\n".join(lines[:-1]) + "\n")  # 13 signals declared and stored, 12 lines left
    with pytest.raises(RecordError, match="count.dat.*signal count cannot be trusted"):
        read_record(base)


def test_unknown_lead_names_are_rejected_naming_file_and_names(tmp_path):
    names = [*CANONICAL_LEADS[:10], "MLII", "V7"]
    base = write_wfdb(tmp_path, "odd", digital_signal(), names)
    with pytest.raises(RecordError, match=r"odd\.hea.*unknown lead names \['MLII', 'V7'\]"):
        read_record(base)


def test_missing_leads_rejected_or_zero_filled_on_request(tmp_path):
    names = ["I", "II", "V1", "V2", "V3", "V4", "V5", "V6"]
    d = digital_signal(n_leads=8)
    base = write_wfdb(tmp_path, "eight", d, names)
    with pytest.raises(RecordError, match=r"eight\.hea: missing leads \['III', 'aVR', 'aVL', 'aVF'\]"):
        read_record(base)
    record = read_record(base, allow_missing_leads=True)
    assert record.meta["missing_leads"] == ["III", "aVR", "aVL", "aVF"]
    assert not record.signal[2:6].any()
    np.testing.assert_allclose(record.signal[1], d[:, 1] / 200.0, atol=1e-6)
    assert record.meta["flat_leads"] == []  # zero-filled leads are missing, not flat


def test_invalid_samples_are_interpolated_and_counted(tmp_path):
    d = digital_signal()
    d[100:103, 4] = -32768  # WFDB's "invalid sample" code for format 16 (wfdb reads NaN)
    base = write_wfdb(tmp_path, "gap", d, CANONICAL_LEADS)
    assert np.isnan(wfdb.rdsamp(str(base))[0][100:103, 4]).all()
    record = read_record(base)
    assert np.isfinite(record.signal).all()
    assert record.meta["filled_samples"] == {"aVL": 3}
    expected = np.interp([100, 101, 102], [99, 103], d[[99, 103], 4] / 200.0)
    np.testing.assert_allclose(record.signal[4, 100:103], expected, atol=1e-6)
    with pytest.raises(RecordError, match=r"gap\.hea: lead aVL has 3 NaN/inf samples"):
        read_record(base, strict=True)


def test_lead_of_invalid_samples_counts_as_missing(tmp_path):
    d = digital_signal()
    d[:, 7] = -32768
    base = write_wfdb(tmp_path, "nanlead", d, CANONICAL_LEADS)
    with pytest.raises(RecordError, match=r"nanlead\.hea: missing leads \['V2'\].*\['V2'\] are mostly NaN/inf"):
        read_record(base)
    record = read_record(base, allow_missing_leads=True)
    assert record.meta["missing_leads"] == ["V2"] and not record.signal[7].any()


def test_nan_and_inf_in_float_data(tmp_path):
    data = digital_signal().T / 1000.0
    data[0, 10] = np.nan
    data[3, 20] = np.inf
    scipy.io.savemat(tmp_path / "A0042.mat", {"ECG": {"sex": "Male", "age": 40, "data": data}})
    record = read_record(tmp_path / "A0042.mat")
    assert np.isfinite(record.signal).all()
    assert record.meta["filled_samples"] == {"I": 1, "aVR": 1}
    with pytest.raises(RecordError, match="NaN/inf"):
        read_record(tmp_path / "A0042.mat", strict=True)


def test_flat_lead_is_flagged_or_rejected_in_strict_mode(tmp_path):
    d = digital_signal()
    d[:, 9] = 17
    base = write_wfdb(tmp_path, "flat", d, CANONICAL_LEADS)
    assert read_record(base).meta["flat_leads"] == ["V4"]
    with pytest.raises(RecordError, match=r"flat\.hea: flat .*\['V4'\]"):
        read_record(base, strict=True)


def test_missing_files_name_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.hea"):
        read_record(tmp_path / "nothere")
    (tmp_path / "nodat.hea").write_text("nodat 1 500 10\nnodat.dat 16 200/mV 16 0 0 0 0 I\n")
    with pytest.raises(FileNotFoundError, match="nodat.dat"):
        read_record(tmp_path / "nodat")


# ----------------------------------------------------------------------------- CPSC2018, SPH, CODE-15


def test_cpsc2018_struct(tmp_path):
    data = digital_signal(n=3000).T / 1000.0
    scipy.io.savemat(tmp_path / "A0001.mat", {"ECG": {"sex": "Female", "age": 74, "data": data}})
    record = read_record(tmp_path / "A0001.mat")
    assert record.fs == 500 and record.signal.shape == (12, 3000)
    np.testing.assert_allclose(record.signal, data, atol=1e-6)
    assert record.meta["age"] == 74 and record.meta["sex"] == "F"


def test_mat_without_header_or_struct_is_explained(tmp_path):
    scipy.io.savemat(tmp_path / "lonely.mat", {"val": digital_signal().T})
    with pytest.raises(RecordError, match="lonely.mat: no 'ECG' struct.*needs its .hea"):
        read_record(tmp_path / "lonely.mat")


def test_sph_h5_with_metadata(tmp_path):
    import h5py

    data = (digital_signal(n=5000).T / 1000.0).astype(np.float16)
    with h5py.File(tmp_path / "SPH00001.h5", "w") as f:
        f["ecg"] = data
    with h5py.File(tmp_path / "SPH00002.h5", "w") as f:
        f["ecg"] = data
    (tmp_path / "metadata.csv").write_text(
        "ECG_ID,AHA_Code,Patient_ID,Age,Sex,N,Date,fs,SNOMEDCTCode,SR\n"
        'SPH00001.h5,22;23,S00001,55,M,5000,2020-03-04,500,"426177001,427393009",0\n')
    record = read_record(tmp_path / "SPH00001.h5")
    np.testing.assert_array_equal(record.signal, data.astype(np.float32))
    assert record.meta["age"] == 55 and record.meta["sex"] == "M"
    assert record.meta["dx"] == ["426177001", "427393009"] and record.fs == 500
    unlisted = read_record(tmp_path / "SPH00002.h5")
    assert unlisted.meta["dx"] == [] and "metadata.csv" in unlisted.meta["notes"][0]


def write_code15(path, n_rows=3):
    import h5py

    rng = np.random.default_rng(0)
    tracings = np.zeros((n_rows, 4096, 12), dtype=np.float32)
    tracings[0, 48:4048] = rng.normal(0, 0.5, size=(4000, 12))  # 10 s exam, centred
    tracings[1, 648:3448] = rng.normal(0, 0.5, size=(2800, 12))  # 7 s exam
    with h5py.File(path, "w") as f:
        f["tracings"] = tracings
        f["exam_id"] = np.array([1169160, 2873686, 0][:n_rows], dtype=np.int64)
    return tracings


def test_code15_rows_trim_padding_and_reject_the_padding_row(tmp_path):
    file = tmp_path / "exams_part0.hdf5"
    tracings = write_code15(file)
    record = read_record(f"{file}#0")
    assert record.fs == 400 and record.signal.shape == (12, 4000)
    np.testing.assert_array_equal(record.signal, tracings[0, 48:4048].T)
    assert record.meta["exam_id"] == 1169160 and record.meta["padding"] == [48, 48]
    short = read_code15(file, 1)
    assert short.signal.shape == (12, 2800) and short.path == f"{file}#1"
    with pytest.raises(RecordError, match=r"exams_part0\.hdf5#2: padding row \(exam_id 0\)"):
        read_record(f"{file}#2")
    with pytest.raises(RecordError, match="row 3 out of range"):
        read_code15(file, 3)
    with pytest.raises(RecordError, match="file.hdf5#row"):
        read_record(file)


def test_lead_mostly_invalid_counts_as_missing_not_interpolated(tmp_path):
    d = digital_signal()
    d[100:300, 0] = -32768  # 20% of lead I, above MAX_FILL_FRACTION
    record = read_record(write_wfdb(tmp_path, "holes", d, CANONICAL_LEADS), allow_missing_leads=True)
    assert record.meta["missing_leads"] == ["I"] and record.meta["filled_samples"] == {}
    assert not record.signal[0].any()


def test_unknown_units_are_rejected(tmp_path):
    base = write_wfdb(tmp_path, "bp", digital_signal(), CANONICAL_LEADS, units="mmHg")
    with pytest.raises(RecordError, match=r"bp\.hea: unknown signal unit 'mmHg'"):
        read_record(base)


def test_cinc_mat_signal_count_repaired_from_val_shape(tmp_path):
    val = digital_signal(seed=9).T.copy()
    hea = write_cinc_mat(tmp_path, "Q0001", val, CANONICAL_LEADS, record_line=f"Q0001 13 500 {T}")
    record = read_record(hea)
    np.testing.assert_allclose(record.signal, expected_mv(val.T, CANONICAL_LEADS, 1000.0), atol=1e-6)
    assert any("declares 13 signals" in note for note in record.meta["notes"])
    hea.write_text("\n".join(hea.read_text().splitlines()[:-1]) + "\n")  # now 11 lines for 12 rows
    with pytest.raises(RecordError, match=r"Q0001\.mat: 'val' holds 12 signals.*11 signal lines"):
        read_record(hea)


def test_multi_segment_record_goes_through_wfdb(tmp_path):
    first, second = digital_signal(seed=10), digital_signal(seed=11)
    write_wfdb(tmp_path, "seg_1", first, MIMIC_ORDER)
    write_wfdb(tmp_path, "seg_2", second, MIMIC_ORDER)
    (tmp_path / "multi.hea").write_text(f"multi/2 12 {FS} {2 * T}\nseg_1 {T}\nseg_2 {T}\n#Age: 70\n")
    record = read_record(tmp_path / "multi.hea")
    both = np.concatenate([first, second])
    np.testing.assert_allclose(record.signal, expected_mv(both, MIMIC_ORDER), atol=1e-6)
    assert record.meta["age"] == 70


def test_record_error_survives_pickling_between_processes():
    import pickle

    err = pickle.loads(pickle.dumps(RecordError("/data/x.hea", "missing leads ['V1']")))
    assert isinstance(err, RecordError) and isinstance(err, ValueError)
    assert str(err) == "/data/x.hea: missing leads ['V1']" and err.path == "/data/x.hea"


def test_a_folder_is_named_as_given(tmp_path):
    from melp.data.readers import RecordError, read_record

    with pytest.raises(RecordError, match=f"{tmp_path}: is a folder, not a record"):
        read_record(tmp_path)
