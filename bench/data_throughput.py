"""ECGs per second delivered in training batches: the memmap cache vs reading WFDB files per record.

The baseline is what the reference implementation does every epoch: one ``wfdb.rdsamp`` per
record, then the preprocessing (resample/window, min-max), inside a torch Dataset. The cache
path is ``ECGTextDataset`` on a cache built once by ``melp prepare``. Both go through the same
DataLoader (batch 64, same worker count) in the same run, on records this script writes itself
in the MIMIC-IV-ECG layout. Prints both rates, their ratio (goal: >= 20x), the one-off build
time, and peak memory.

    python bench/data_throughput.py [--records 640] [--batch 64] [--workers 0] [--epochs 2]
"""
from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import wfdb
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from melp.data.datasets import ECGTextDataset, batch_loader
from melp.data.preprocess import PreprocessConfig, preprocess

MIMIC_LEADS = ["I", "II", "III", "aVR", "aVF", "aVL", "V1", "V2", "V3", "V4", "V5", "V6"]


def write_records(root: Path, n: int, seed: int = 0) -> None:
    """n 10 s, 500 Hz, 12-lead records in the MIMIC-IV-ECG layout (format 16, as the real files)."""
    rng = np.random.default_rng(seed)
    t = np.arange(5000) / 500
    rec_rows, mm_rows = [], []
    for i in tqdm(range(n), desc="writing WFDB fixture", unit="rec"):
        subject, study = 10000000 + i // 3, 40000000 + i
        rel = f"files/p{str(subject)[:4]}/p{subject}/s{study}/{study}"
        folder = root / Path(rel).parent
        folder.mkdir(parents=True, exist_ok=True)
        beat = np.sin(2 * np.pi * rng.uniform(0.8, 2.0) * t) ** 15  # spiky, ECG-like scale
        sig = beat[None] * rng.uniform(0.2, 2.0, (12, 1)) + 0.05 * rng.standard_normal((12, 5000))
        wfdb.wrsamp(str(study), fs=500, units=["mV"] * 12, sig_name=MIMIC_LEADS, p_signal=sig.T,
                    fmt=["16"] * 12, adc_gain=[200.0] * 12, baseline=[0] * 12, write_dir=str(folder))
        rec_rows.append({"subject_id": subject, "study_id": study, "file_name": study,
                         "ecg_time": "2180-01-01 00:00:00", "path": rel})
        mm_rows.append({"subject_id": subject, "study_id": study, "report_0": "Sinus rhythm",
                        "report_1": "Left axis deviation", "report_2": "Abnormal ECG"})
    pd.DataFrame(rec_rows).to_csv(root / "record_list.csv", index=False)
    pd.DataFrame(mm_rows).to_csv(root / "machine_measurements.csv", index=False)


class PerRecordWFDB(Dataset):
    """The reference's way: read and preprocess every record from its WFDB files, every epoch."""

    def __init__(self, root: Path, cfg: PreprocessConfig):
        table = pd.read_csv(root / "record_list.csv")
        self.paths = [str(root / p) for p in table["path"]]
        self.cfg = cfg

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        signal, fields = wfdb.rdsamp(self.paths[i])
        order = [fields["sig_name"].index(lead) for lead in
                 ["I", "II", "III", "aVR", "aVL", "aVF", "V1", "V2", "V3", "V4", "V5", "V6"]]
        x = preprocess(signal.T[order], fields["fs"], self.cfg)[0]
        return {"ecg": torch.from_numpy(x), "report": "", "index": i}


def ecgs_per_second(loader, epochs: int, label: str) -> tuple[float, float]:
    """Mean rate over ``epochs`` full shuffled passes after one untimed warm-up pass (both paths then
    read from the page cache, as in a training run's later epochs), and the tracemalloc peak (MiB)
    of a separate short pass (tracing slows allocation, so it is kept out of the timed loop)."""
    for _ in tqdm(loader, desc=f"{label} (warm-up)", unit="batch", leave=False):
        pass
    seen, start = 0, time.perf_counter()
    for _ in range(epochs):
        for b in tqdm(loader, desc=label, unit="batch", leave=False):
            seen += b["ecg"].shape[0]
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    for k, b in enumerate(loader):
        if k == 2:
            break
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seen / elapsed, peak


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=640)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader workers, the same for both paths")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of this process (default 1: batches are collated here when --workers 0, "
                         "and OpenMP threads on a busy small machine make torch.stack 100x slower)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        root, cache = work / "mimic", work / "cache"
        root.mkdir(parents=True, exist_ok=True)
        write_records(root, args.records)
        cfg = PreprocessConfig()

        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "melp.cli", "prepare", "mimic-iv-ecg", "--root", str(root),
                        "--out", str(cache), "--workers", "2", "--quiet", "--overwrite"], check=True)
        build_s = time.perf_counter() - start
        build_rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024

        def loader(dataset):  # the same DataLoader settings for both paths
            return DataLoader(dataset, batch_size=args.batch, shuffle=True, num_workers=args.workers)

        wfdb_rate, wfdb_peak = ecgs_per_second(loader(PerRecordWFDB(root, cfg)), args.epochs, "per-record WFDB")
        train = ECGTextDataset(cache, lead_mask_prob=0.5)
        cache_rate, cache_peak = ecgs_per_second(loader(train), args.epochs, "memmap cache")
        fast_rate, fast_peak = ecgs_per_second(
            batch_loader(train, args.batch, shuffle=True, num_workers=args.workers), args.epochs, "batch_loader")
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    print(f"records: {args.records}, batch {args.batch}, DataLoader workers {args.workers}, "
          f"{args.epochs} epochs each, torch threads {torch.get_num_threads()}")
    print(f"per-record WFDB + preprocessing   : {wfdb_rate:9.1f} ECG/s   (tracemalloc peak {wfdb_peak:6.1f} MiB)")
    print(f"cache, DataLoader default collate: {cache_rate:8.1f} ECG/s   (tracemalloc peak {cache_peak:6.1f} MiB)"
          f"   ratio {cache_rate / wfdb_rate:5.1f}x")
    print(f"cache, melp batch_loader          : {fast_rate:8.1f} ECG/s   (tracemalloc peak {fast_peak:6.1f} MiB)"
          f"   ratio {fast_rate / wfdb_rate:5.1f}x   (goal >= 20x)")
    print(f"one-off `melp prepare` (2 workers): {build_s:.1f} s = {args.records / build_s:.0f} records/s, "
          f"peak RSS of the build {build_rss:.0f} MiB")
    print(f"peak RSS of this process (both loops): {rss:.0f} MiB")


if __name__ == "__main__":
    main()
