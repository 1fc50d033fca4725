"""ECG embedding speed of the paper-size model on raw records, against the authors' code in the same run.

melp: ``MELP.embed_ecg`` on simulated raw 10 s, 500 Hz records in mV, preprocessing included, in
fp32 and in bf16 (``set_precision``). The authors: ``MELPModel.encode_ecg`` on already-normalised
tensors (bench/authors_reference.py, run with the reference environment of shared/refbench when
``--reference`` names it), fp32 and bf16 autocast. Each round runs the authors, then melp; the
figures of every round are printed, then their medians and the ratios. Also prints the smallest
cosine between melp's bf16 and fp32 embeddings of the same records, and the in-run fp32 matmul rate.
``--compile`` adds melp with ``compile=True`` in both precisions (their own model copies, compiled in
the warm-up call of each batch size, so the timed calls run compiled graphs).

melp's process keeps freed host memory as the ``melp`` commands do (``melp.keep_freed_host_memory``)
unless ``--system-allocator``; the authors' subprocess gets the system's settings unless
``--reference-keep-memory`` gives it the same two.

    python bench/embed.py [--reference /tmp/refbench] [--batches 1 16 256] [--rounds 2] [--compile]
                          [--system-allocator] [--reference-keep-memory]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from melp.models.config import MELPConfig
from melp.models.melp import MELP
from melp.models.text_encoder import build_random_text_model
from melp.synth import simulate
from melp.train.host_memory import FRESH_PROCESS_ENV, keep_freed_host_memory

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import matmul_gflops, run_authors  # noqa: E402


def authors(reference: str, python: str, batches: list[int], min_ecgs: int, bf16: bool,
            keep_memory: bool = False) -> dict[int, float]:
    arguments = ["embed", "--batches", *map(str, batches), "--min-ecgs", str(min_ecgs)] + (["--bf16"] if bf16 else [])
    result = run_authors(python, reference, arguments, FRESH_PROCESS_ENV if keep_memory else None)
    return {int(b): r for b, r in result["ecg_per_s"].items()}


def ours(model: MELP, raw: np.ndarray, batches: list[int], min_ecgs: int, precision: str,
         compile: bool = False) -> dict[int, float]:
    model.set_precision(precision, compile)
    rates = {}
    for b in batches:
        n = max(b, min_ecgs)
        model.embed_ecg(raw[:b], fs=500, batch_size=b)  # warm-up
        start = time.perf_counter()
        for j in range(0, n, b):
            model.embed_ecg(raw[j:j + b], fs=500, batch_size=b)
        rates[b] = n / (time.perf_counter() - start)
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None, help="the authors' reference folder (shared/refbench/README.md)")
    parser.add_argument("--reference-python", default=None, help="its Python (default REFERENCE/venv/bin/python)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 256])
    parser.add_argument("--min-ecgs", type=int, default=16, help="ECGs timed per batch size, at least")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time melp with compile=True")
    parser.add_argument("--system-allocator", action="store_true",
                        help="melp without keep_freed_host_memory's settings (the system's malloc and page sizes)")
    parser.add_argument("--reference-keep-memory", action="store_true",
                        help="give the authors' subprocess the same settings as melp's (environment variables)")
    args = parser.parse_args()
    kept = False if args.system_allocator else keep_freed_host_memory()
    print(f"host memory: melp {'keeps freed memory' if kept else 'system settings'}, authors "
          f"{'keep freed memory' if args.reference_keep_memory else 'system settings'}")
    python = args.reference_python or (str(Path(args.reference) / "venv/bin/python") if args.reference else None)

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        config = MELPConfig.from_preset("paper")
        config.text.source = str(build_random_text_model(tmp, hidden_size=768, layers=12, heads=12))
        model = MELP(config).eval()
        # compiled variants on their own copies: switching one model's setting would recompile every round
        copies = {}
        for precision in ["fp32", "bf16"] if args.compile else []:
            copies[f"melp {precision} compiled"] = twin = MELP(config).eval()
            twin.load_state_dict(model.state_dict())
            twin.set_precision(precision, compile=True)
    raw = simulate(max(max(args.batches), args.min_ecgs), seed=0).signals.astype(np.float32)  # (N, 12, 5000) mV
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; paper model; raw records {raw.shape}")

    columns = (["authors fp32", "authors bf16"] if args.reference else []) + ["melp fp32", "melp bf16"] + list(copies)
    rounds = []
    for r in range(args.rounds):
        load, peak = os.getloadavg()[0], matmul_gflops()
        row = {}
        if args.reference:
            for precision in ("fp32", "bf16"):
                row[f"authors {precision}"] = authors(args.reference, python, args.batches, args.min_ecgs,
                                                      precision == "bf16", args.reference_keep_memory)
        row["melp fp32"] = ours(model, raw, args.batches, args.min_ecgs, "fp32")
        row["melp bf16"] = ours(model, raw, args.batches, args.min_ecgs, "bf16")
        for name, twin in copies.items():
            row[name] = ours(twin, raw, args.batches, args.min_ecgs, twin.precision, compile=True)
        rounds.append(row)
        print(f"\nround {r + 1} (load average {load:.2f}, fp32 matmul {peak:.0f} GFLOP/s), ECG/s:")
        print("  batch  " + "".join(f"{c:>20}" for c in columns))
        for b in args.batches:
            print(f"  {b:5d}  " + "".join(f"{row[c][b]:20.2f}" for c in columns))

    median = {c: {b: float(np.median([row[c][b] for row in rounds])) for b in args.batches} for c in columns}
    print(f"\nmedian of {args.rounds} rounds, ECG/s" + (" and melp's speed-up over the authors:" if args.reference else ":"))
    for b in args.batches:
        line = f"  batch {b:4d}: " + ", ".join(f"{c} {median[c][b]:.2f}" for c in columns)
        if args.reference:
            line += (f" | melp bf16 / authors fp32 {median['melp bf16'][b] / median['authors fp32'][b]:.2f}x, "
                     f"/ authors bf16 {median['melp bf16'][b] / median['authors bf16'][b]:.2f}x, "
                     f"melp fp32 / authors fp32 {median['melp fp32'][b] / median['authors fp32'][b]:.2f}x")
            for name in copies:
                line += f", {name} / authors fp32 {median[name][b] / median['authors fp32'][b]:.2f}x"
        print(line)
    model.set_precision("fp32")
    fp32 = model.embed_ecg(raw, fs=500)
    bf16 = model.set_precision("bf16").embed_ecg(raw, fs=500)
    print(f"smallest cosine between melp's bf16 and fp32 embeddings of the {len(raw)} records: "
          f"{float((fp32 * bf16).sum(1).min()):.5f}")
    for name, twin in copies.items():
        print(f"smallest cosine between {name} and fp32 embeddings: "
              f"{float((fp32 * twin.embed_ecg(raw, fs=500)).sum(1).min()):.5f}")


if __name__ == "__main__":
    main()
