"""MIMIC-IV-ECG v1.0 layout: the pretraining corpus of the demo.

record_list.csv (subject_id, study_id, file_name, ecg_time, path), machine_measurements.csv
(subject_id, study_id, cart_id, ecg_time, report_0..report_17, bandwidth, filtering, rr_interval,
p_onset, p_end, qrs_onset, qrs_end, t_end, p_axis, qrs_axis, t_axis; 29999 = not measured) and
WFDB records files/p{first 4 digits}/p{subject_id}/s{study_id}/{study_id} in MIMIC's lead order
(aVF before aVL), format 16 at 200 units/mV, 500 Hz, 10 s.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from melp.synth.exporters.wfdb_io import to_digital, write_dat
from melp.synth.simulate import CHUNK, iter_batches

LEADS = ("I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6")
ORDER = [("I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6").index(x) for x in LEADS]
GAIN = 200.0
N_REPORT_COLS = 18
MISSING = 29999  # MIMIC's value for an interval or axis that was not measured
SUBJECT_BASE, STUDY_BASE = 10_000_000, 40_000_000


def _times(subject_ids: np.ndarray, seed: int) -> list[pd.Timestamp]:
    """Shifted dates as in MIMIC (years ~2110-2210): each subject's ECGs weeks to months apart."""
    out = []
    rng = np.random.default_rng([seed, 7])
    start = {}
    for sid in subject_ids:
        if sid not in start:
            start[sid] = pd.Timestamp("2110-01-01") + pd.Timedelta(days=int((sid * 7919 + seed) % 36500))
        else:
            start[sid] += pd.Timedelta(days=int(rng.integers(1, 400)), minutes=int(rng.integers(0, 1440)))
        out.append(start[sid].floor("min"))
    return out


def _intervals(meas: dict, i: int) -> dict:
    def val(x):
        return MISSING if not np.isfinite(x) else int(round(x))

    has_p = np.isfinite(meas["pr"][i])
    p_onset = 40
    qrs_onset = p_onset + (val(meas["pr"][i]) if has_p else 160)
    return {
        "rr_interval": val(meas["rr"][i]),
        "p_onset": p_onset if has_p else MISSING,
        "p_end": p_onset + 100 if has_p else MISSING,
        "qrs_onset": qrs_onset,
        "qrs_end": qrs_onset + val(meas["qrs"][i]),
        "t_end": qrs_onset + val(meas["qt"][i]),
        "p_axis": val(meas["p_axis"][i]),
        "qrs_axis": val(meas["qrs_axis"][i]),
        "t_axis": val(meas["t_axis"][i]),
    }


def write(out, n: int, seed: int, progress: bool = False) -> None:
    records, measurements = [], []
    bar = tqdm(total=n, desc="writing mimic-iv-ecg", unit="ecg", disable=not progress)
    for c, batch in enumerate(iter_batches(n, seed)):
        subject_ids = SUBJECT_BASE + batch.subject_ids
        for j, when in enumerate(_times(batch.subject_ids, seed)):
            index = c * CHUNK + j
            subject, study = int(subject_ids[j]), STUDY_BASE + index
            rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
            digital = to_digital(batch.signals[j][ORDER], GAIN)
            write_dat(out / rel.rsplit("/", 1)[0], str(study), digital, batch.fs, f"{GAIN:.0f}/mV", LEADS,
                      time_date=when.strftime("%H:%M:%S %d/%m/%Y"))
            ecg_time = when.strftime("%Y-%m-%d %H:%M:%S")
            records.append({"subject_id": subject, "study_id": study, "file_name": str(study),
                            "ecg_time": ecg_time, "path": rel})
            row = {"subject_id": subject, "study_id": study, "cart_id": 6800 + int(subject % 97), "ecg_time": ecg_time}
            statements = batch.statements[j]
            row.update({f"report_{k}": statements[k] if k < len(statements) else None for k in range(N_REPORT_COLS)})
            row.update({"bandwidth": "0.005-150 Hz", "filtering": "60 Hz notch Butterworth filter"})
            row.update(_intervals(batch.measurements, j))
            measurements.append(row)
            bar.update()
    bar.close()
    pd.DataFrame(records).to_csv(out / "record_list.csv", index=False)
    pd.DataFrame(measurements).to_csv(out / "machine_measurements.csv", index=False)
