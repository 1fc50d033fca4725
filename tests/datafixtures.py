"""Writers of tiny datasets in their real on-disk layouts, for the adapter/cache/dataset tests.

Signals are known functions so that tests can check values after a round trip: lead k of a
record is ``amp * (k + 1) * sin(2 pi f t)`` mV with ``f`` depending on the record.
"""
from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.io
import wfdb

CANONICAL = ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]
MIMIC_ORDER = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def known_signal(seed: int, fs: float = 500, seconds: float = 10.0, amp: float = 0.1) -> np.ndarray:
    """(12, T) mV in canonical order."""
    t = np.arange(int(round(fs * seconds))) / fs
    f = 1.0 + 0.25 * (seed % 7)
    return np.stack([amp * (k + 1) * np.sin(2 * np.pi * f * t + seed) for k in range(12)]).astype(np.float32)


def write_wfdb(folder: Path, name: str, signal_mv: np.ndarray, fs: float, leads=CANONICAL, comments=(),
               gain: float = 1000.0):
    """A WFDB record (.hea + format-16 .dat) with leads stored in ``leads`` order."""
    folder.mkdir(parents=True, exist_ok=True)
    lower = [c.lower() for c in CANONICAL]
    order = [lower.index(lead.lower()) for lead in leads]
    wfdb.wrsamp(name, fs=fs, units=["mV"] * 12, sig_name=list(leads), p_signal=signal_mv[order].T.astype(np.float64),
                fmt=["16"] * 12, adc_gain=[gain] * 12, baseline=[0] * 12, comments=list(comments),
                write_dir=str(folder))
    return folder / name


def write_cinc_mat(folder: Path, name: str, signal_mv: np.ndarray, fs: int = 500, dx=(), extra=()):
    """A PhysioNet/CinC record: ``name.mat`` (key ``val``, int16 at 1000/mV) + hand-written ``name.hea``."""
    folder.mkdir(parents=True, exist_ok=True)
    val = np.rint(signal_mv * 1000).astype(np.int16)
    scipy.io.savemat(folder / f"{name}.mat", {"val": val}, format="4")
    lines = [f"{name} 12 {fs} {val.shape[1]}"]
    lines += [f"{name}.mat 16+24 1000/mV 16 0 {val[k, 0]} 0 0 {lead}" for k, lead in enumerate(CANONICAL)]
    lines += ["#Age: 60", "#Sex: Male", f"#Dx: {','.join(dx)}", "#Rx: Unknown", *extra]
    (folder / f"{name}.hea").write_text("\n".join(lines) + "\n")
    return folder / name


def write_mimic(root: Path, reports: list[list[str]], subjects: list[int] | None = None) -> Path:
    """MIMIC-IV-ECG: record_list.csv, machine_measurements.csv, files/pXXXX/pSID/sSTUDY/STUDY."""
    subjects = subjects or [10000032 + i // 2 for i in range(len(reports))]
    rec_rows, mm_rows = [], []
    for i, (parts, sid) in enumerate(zip(reports, subjects)):
        study = 40689238 + i
        rel = f"files/p{str(sid)[:4]}/p{sid}/s{study}/{study}"
        write_wfdb(root / Path(rel).parent, str(study), known_signal(i), 500, MIMIC_ORDER)
        rec_rows.append({"subject_id": sid, "study_id": study, "file_name": study,
                         "ecg_time": "2180-07-23 08:44:00", "path": rel})
        row = {"subject_id": sid, "study_id": study, "cart_id": 6848296, "ecg_time": "2180-07-23 08:44:00"}
        row.update({f"report_{k}": (parts[k] if k < len(parts) else None) for k in range(18)})
        row.update({"bandwidth": "0.005-150 Hz", "rr_interval": 659})
        mm_rows.append(row)
    pd.DataFrame(rec_rows).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm_rows).to_csv(root / "machine_measurements.csv", index=False)
    return root


SCP_STATEMENTS = pd.DataFrame(
    [
        # code, description, diagnostic, form, rhythm, diagnostic_class, diagnostic_subclass
        ("NORM", "normal ECG", 1.0, None, None, "NORM", "NORM"),
        ("IMI", "inferior myocardial infarction", 1.0, None, None, "MI", "IMI"),
        ("LAFB", "left anterior fascicular block", 1.0, None, None, "CD", "LAFB/LPFB"),
        ("NDT", "non-diagnostic T abnormalities", 1.0, 1.0, None, "STTC", "STTC"),
        ("ABQRS", "abnormal QRS", None, 1.0, None, None, None),
        ("SR", "sinus rhythm", None, None, 1.0, None, None),
        ("AFIB", "atrial fibrillation", None, None, 1.0, None, None),
    ],
    columns=["scp", "description", "diagnostic", "form", "rhythm", "diagnostic_class", "diagnostic_subclass"],
).set_index("scp")


def write_ptbxl(root: Path, scp_codes: list[dict], folds: list[int], patients: list[int]) -> Path:
    rows = []
    for i, (codes, fold, patient) in enumerate(zip(scp_codes, folds, patients)):
        ecg_id = i + 1
        sub = f"{(ecg_id // 1000) * 1000:05d}"
        write_wfdb(root / "records500" / sub, f"{ecg_id:05d}_hr", known_signal(i), 500)
        rows.append({"ecg_id": ecg_id, "patient_id": float(patient), "age": 56.0, "sex": 1,
                     "report": f"sinusrhythmus  normales ekg {i}", "scp_codes": repr(codes), "strat_fold": fold,
                     "filename_lr": f"records100/{sub}/{ecg_id:05d}_lr",
                     "filename_hr": f"records500/{sub}/{ecg_id:05d}_hr"})
    pd.DataFrame(rows).to_csv(root / "ptbxl_database.csv", index=False)
    SCP_STATEMENTS.to_csv(root / "scp_statements.csv")
    return root


def write_ludb(root: Path, n: int = 4) -> Path:
    data = root / "data"
    rows = []
    for i in range(1, n + 1):
        comments = ["<age>: 51", "<sex>: F", "<diagnoses>:", "Rhythm: Sinus rhythm.",
                    "Electric axis of the heart: normal. ", f"Left ventricular hypertrophy{'.' if i % 2 else ''}"]
        write_wfdb(data, str(i), known_signal(i), 500, [lead.lower() for lead in CANONICAL], comments)
        rows.append({"ID": i, "Sex": "F\n", "Age": "51\n", "Rhythms": "Sinus rhythm",
                     "Electric axis of the heart": "Electric axis of the heart: normal",
                     "Conduction abnormalities": None,
                     "Hypertrophies": "Left ventricular hypertrophy\nLeft atrial hypertrophy" if i % 2 else None})
    pd.DataFrame(rows).to_csv(root / "ludb.csv", index=False)
    return root


def write_code15(root: Path, n_per_part=(3, 2)) -> tuple[Path, dict[int, np.ndarray]]:
    """exams.csv + exams_partK.hdf5 ((N+1), 4096, 12) with a padding last row. Returns exam -> (12, 4000) mV."""
    root.mkdir(parents=True, exist_ok=True)
    rows, signals, exam = [], {}, 100
    for part, n in enumerate(n_per_part):
        tr = np.zeros((n + 1, 4096, 12), dtype=np.float32)
        ids = np.zeros(n + 1, dtype=np.int64)
        for r in range(n):
            x = known_signal(exam, fs=400, seconds=10.0)  # 4000 samples, centred with 48 zeros each side
            tr[r, 48:4048] = x.T
            ids[r] = exam
            signals[exam] = x
            rows.append({"exam_id": exam, "age": 50, "is_male": True, "nn_predicted_age": 50.0,
                         "1dAVb": exam % 2 == 0, "RBBB": False, "LBBB": exam % 3 == 0, "SB": False, "ST": False,
                         "AF": exam % 5 == 0, "patient_id": 9000 + exam // 2, "death": False, "timey": 1.0,
                         "normal_ecg": False, "trace_file": f"exams_part{part}.hdf5"})
            exam += 1
        with h5py.File(root / f"exams_part{part}.hdf5", "w") as f:
            f["tracings"] = tr
            f["exam_id"] = ids
    pd.DataFrame(rows).to_csv(root / "exams.csv", index=False)
    return root, signals
