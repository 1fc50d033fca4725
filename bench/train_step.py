"""Speed of the paper-size MELP on this machine: one optimisation step and inference embedding.

Prints seconds per step (forward, backward, AdamW) at batch 8 and ECG embeddings per second,
each also as achieved GFLOP/s relative to the fp32 matmul GFLOP/s measured in the same run (so
figures from different machines or loads compare). The text side is a randomly initialised
BERT-base of MedCPT-Query-Encoder's shape (12 x 768, 12 heads, vocabulary 30522) written to a temp
folder. Reference, the authors' implementation on a 2-core CPU: ~41 s/step at batch 8, ~1.5 ECG/s.

    python bench/train_step.py [--preset paper] [--batch 8] [--steps 3] [--embed 16] [--bf16]
"""
from __future__ import annotations

import argparse
import contextlib
import tempfile
import time

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from tqdm import tqdm

from melp.models.config import MELPConfig
from melp.models.melp import MELP
from melp.models.text_encoder import build_random_text_model

REFERENCE_STEP_S, REFERENCE_ECG_PER_S = 41.0, 1.5

# MIMIC-IV-ECG-style machine statements, 2-6 sentences (about 10-45 tokens with [BOS]/[CLS])
REPORTS = [
    "sinus rhythm. normal ecg.",
    "sinus rhythm. left axis deviation. nonspecific t wave abnormality. abnormal ecg.",
    "atrial fibrillation with rapid ventricular response. low qrs voltages in limb leads. abnormal ecg.",
    "sinus bradycardia. first degree av block. right bundle branch block. inferior infarct - age undetermined. abnormal ecg.",
    "sinus tachycardia. possible left atrial enlargement. left ventricular hypertrophy with repolarization abnormality. st depression in lateral leads. prolonged qt interval. abnormal ecg.",
    "atrial flutter with 2:1 av conduction. borderline ecg.",
    "sinus rhythm with premature ventricular complexes. poor r wave progression - probable normal variant. borderline ecg.",
    "paced rhythm. no further analysis. abnormal ecg.",
]


def matmul_gflops(dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 3) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e9


def count_flops(fn) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps (after one warm-up step)")
    parser.add_argument("--embed", type=int, default=16, help="ECGs to embed for the inference figure")
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast (the paper trains in bf16 mixed precision; fast on CPUs with AMX)")
    args = parser.parse_args()
    precision = torch.autocast("cpu", dtype=torch.bfloat16) if args.bf16 else contextlib.nullcontext()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    peak = matmul_gflops()
    print(f"fp32 matmul (2048^3): {peak:.1f} GFLOP/s  [the in-run baseline]")

    with tempfile.TemporaryDirectory() as tmp:
        text_dir = build_random_text_model(tmp, hidden_size=768, layers=12, heads=12, intermediate_size=3072)
        config = MELPConfig.from_preset(args.preset)
        config.text.source = str(text_dir)
        model = MELP(config)
    trainable = [p for p in model.parameters() if p.requires_grad]
    print(f"{args.preset}: ECG encoder {sum(p.numel() for p in model.ecg_encoder.parameters()) / 1e6:.1f} M, "
          f"total {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M, trainable {sum(p.numel() for p in trainable) / 1e6:.1f} M")
    # fused: one kernel over all parameters; the per-tensor loop costs seconds per step at this size
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.2, fused=True)
    n = config.preprocess.n_samples
    ecg = torch.rand(args.batch, 12, n)
    tokens = model.tokenize([REPORTS[i % len(REPORTS)] for i in range(args.batch)])
    print(f"batch {args.batch} x (12, {n}); reports padded to {tokens['input_ids'].shape[1]} tokens")

    def forward_backward():
        with precision:
            loss = model(ecg, tokens)["loss"]
        loss.backward()

    def step():
        opt.zero_grad(set_to_none=True)
        forward_backward()
        opt.step()

    model.train()
    step_flops = count_flops(forward_backward)  # also the warm-up
    # the machine may be shared: measure the matmul rate right before every timed step
    times, ratios = [], []
    for _ in tqdm(range(args.steps), desc="train steps"):
        peak_now = matmul_gflops()
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
        ratios.append(step_flops / times[-1] / 1e9 / peak_now)
    step_s = float(np.median(times))
    step_gflops = step_flops / step_s / 1e9

    signals = np.random.default_rng(0).standard_normal((args.embed, 12, n)).astype(np.float32) * 0.2
    model.eval()
    with torch.no_grad(), precision:
        embed_flops = count_flops(lambda: model.encode_ecg(ecg[:1])) * args.embed  # also the warm-up
    peak_now = matmul_gflops()
    with precision:
        start = time.perf_counter()
        model.embed_ecg(signals, fs=config.preprocess.fs, batch_size=16)
        embed_s = time.perf_counter() - start
    per_s = args.embed / embed_s
    embed_gflops = embed_flops / embed_s / 1e9
    embed_ratio = embed_gflops / peak_now

    print(f"\nprecision: {'bf16 autocast' if args.bf16 else 'fp32'}; fp32 matmul {peak:.1f} GFLOP/s at start, "
          f"{matmul_gflops():.1f} at end; bf16 matmul {matmul_gflops(torch.bfloat16):.1f} GFLOP/s")
    print(f"train step: {step_s:.2f} s/step (median of {args.steps}: {', '.join(f'{t:.2f}' for t in times)}), "
          f"{step_flops / 1e12:.2f} TFLOP/step, {step_gflops:.1f} GFLOP/s = {np.median(ratios):.2f} x the fp32 "
          f"matmul rate measured just before each step; {REFERENCE_STEP_S / step_s:.2f}x the reference's ~{REFERENCE_STEP_S:.0f} s")
    print(f"inference: {per_s:.2f} ECG/s (embed_ecg on {args.embed} raw 10 s ECGs incl. preprocessing), "
          f"{embed_gflops:.1f} GFLOP/s = {embed_ratio:.2f} x the fp32 matmul rate; "
          f"{per_s / REFERENCE_ECG_PER_S:.2f}x the reference's ~{REFERENCE_ECG_PER_S} ECG/s")


if __name__ == "__main__":
    main()
