"""Every real record in MELP_REAL_DATA reads to wfdb.rdsamp's millivolts (after name reordering)."""
from __future__ import annotations

import numpy as np
import pytest
import wfdb

import melp
from melp.data.leads import CANONICAL_LEADS, match_leads

TOLERANCE_MV = 1e-6


def _wfdb_headers(root):
    headers = sorted((root / "ludb" / "data").glob("*.hea")) + sorted((root / "cinc-smoke").glob("*/*.hea"))
    assert len(headers) >= 250, f"expected the 200 LUDB + 60 WFDB cinc-smoke records, found {len(headers)}"
    return headers


def test_every_wfdb_record_matches_rdsamp(real_data):
    """rdsamp's millivolts, except LUDB's: its header gains stretch every lead to a range of 1 mV,
    so its counts are read at one gain, 1000 per mV (rdsamp's digital samples / 1000)."""
    worst = 0.0
    for header in _wfdb_headers(real_data):
        record = melp.read_record(header)
        ludb = header.parent.parent.name == "ludb"
        reference, fields = wfdb.rdsamp(str(header.with_suffix("")))
        if ludb:
            raw = wfdb.rdrecord(str(header.with_suffix("")), physical=False)
            reference = (raw.d_signal - np.array(raw.baseline)) / 1000.0
        assert any("1000 counts per mV" in note for note in record.meta["notes"]) == ludb, header
        order, _ = match_leads(fields["sig_name"])
        expected = reference.T[order]
        assert record.signal.shape == expected.shape and record.fs == fields["fs"], header
        assert np.isfinite(expected).all(), f"{header}: wfdb reads NaN; compare the filled samples separately"
        diff = float(np.abs(record.signal - expected).max())
        assert diff < TOLERANCE_MV, f"{header}: max abs difference {diff} mV"
        assert record.meta["comments"] == fields["comments"], header
        if ludb:  # the limb identity holds again (to the per-lead baselines' few microvolts)
            x = record.signal.astype(np.float64)
            assert np.abs(x[2] - (x[1] - x[0])).max() < 0.015, header
        worst = max(worst, diff)
    print(f"worst difference over all WFDB records: {worst:.2e} mV")


def test_real_metadata_is_parsed(real_data):
    ludb = melp.read_record(real_data / "ludb" / "data" / "1.hea")
    assert ludb.meta["age"] == 51 and ludb.meta["sex"] == "F"
    assert "<diagnoses>:" in ludb.meta["comments"]
    assert any(c.startswith("Rhythm:") for c in ludb.meta["comments"])
    georgia = melp.read_record(real_data / "cinc-smoke" / "G12EC" / "E00001.hea")
    assert georgia.meta["age"] is None and georgia.meta["sex"] == "F" and georgia.meta["dx"] == ["426783006"]
    ptb = melp.read_record(real_data / "cinc-smoke" / "PTB_PTBXL" / "S0001.hea")
    assert ptb.fs == 1000 and ptb.meta["dx"] == ["251146004", "426783006"]


def test_sph_h5_records_read_as_stored_in_standard_lead_order(real_data):
    import h5py

    files = sorted((real_data / "cinc-smoke" / "SPH").glob("*.h5"))
    assert files, "no SPH .h5 files"
    for file in files:
        record = melp.read_record(file)
        with h5py.File(file, "r") as f:
            stored = f["ecg"][()]
        np.testing.assert_array_equal(record.signal, stored.astype(np.float32), err_msg=str(file))
        # SPH stores no lead names: Einthoven's and Goldberger's identities confirm the documented
        # order (float16 storage rounds each value by up to ~1e-3 mV at these amplitudes).
        lead = {name: record.signal[k].astype(np.float64) for k, name in enumerate(CANONICAL_LEADS)}
        assert np.abs(lead["III"] - (lead["II"] - lead["I"])).max() < 0.01, file
        assert np.abs(lead["aVR"] + (lead["I"] + lead["II"]) / 2).max() < 0.01, file
        assert np.abs(lead["aVL"] - (lead["I"] - lead["III"]) / 2).max() < 0.01, file


@pytest.mark.parametrize("name", ["ChapmanShaoxing_Ningbo/JS45542", "ChapmanShaoxing_Ningbo/JS45551"])
def test_real_flat_leads_are_flagged(real_data, name):
    record = melp.read_record(real_data / "cinc-smoke" / f"{name}.hea")
    assert "V6" in record.meta["flat_leads"]
