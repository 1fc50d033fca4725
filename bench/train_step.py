"""Speed of the paper-size MELP on this machine: one optimisation step and inference embedding.

Prints seconds per step (forward, backward, AdamW) at batch 8 and ECG embeddings per second,
each also as achieved GFLOP/s relative to the fp32 matmul GFLOP/s measured in the same run (so
figures from different machines or loads compare). The text side is a randomly initialised
BERT-base of MedCPT-Query-Encoder's shape (12 x 768, 12 heads, vocabulary 30522) written to a temp
folder. Reference, the authors' implementation on a 2-core CPU: ~41 s/step at batch 8, ~1.5 ECG/s.

    python bench/train_step.py [--preset paper] [--batch 8] [--steps 3] [--embed 16]
"""
from __future__ import annotations

import argparse
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


def matmul_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
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
    args = parser.parse_args()
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
    opt = torch.optim.AdamW(trainable, lr=1e-4, betas=(0.9, 0.95), weight_decay=0.2)
    n = config.preprocess.n_samples
    ecg = torch.rand(args.batch, 12, n)
    tokens = model.tokenize([REPORTS[i % len(REPORTS)] for i in range(args.batch)])
    print(f"batch {args.batch} x (12, {n}); reports padded to {tokens['input_ids'].shape[1]} tokens")

    def step():
        opt.zero_grad(set_to_none=True)
        model(ecg, tokens)["loss"].backward()
        opt.step()

    model.train()
    step_flops = count_flops(lambda: model(ecg, tokens)["loss"].backward())  # also the warm-up
    times = []
    for _ in tqdm(range(args.steps), desc="train steps"):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    step_s = float(np.median(times))
    step_gflops = step_flops / step_s / 1e9

    signals = np.random.default_rng(0).standard_normal((args.embed, 12, n)).astype(np.float32) * 0.2
    model.embed_ecg(signals[:2])  # warm-up
    model.eval()
    with torch.no_grad():
        embed_flops = count_flops(lambda: model.encode_ecg(ecg[:1])) * args.embed
    start = time.perf_counter()
    model.embed_ecg(signals, fs=config.preprocess.fs, batch_size=16)
    embed_s = time.perf_counter() - start
    per_s = args.embed / embed_s
    embed_gflops = embed_flops / embed_s / 1e9

    print(f"\ntrain step: {step_s:.2f} s/step (median of {args.steps}; {', '.join(f'{t:.2f}' for t in times)}), "
          f"{step_flops / 1e12:.2f} TFLOP/step, {step_gflops:.1f} GFLOP/s = {step_gflops / peak:.2f} x matmul peak; "
          f"{REFERENCE_STEP_S / step_s:.1f}x faster than the reference's ~{REFERENCE_STEP_S:.0f} s")
    print(f"inference: {per_s:.2f} ECG/s (embed_ecg on {args.embed} raw 10 s ECGs incl. preprocessing), "
          f"{embed_gflops:.1f} GFLOP/s = {embed_gflops / peak:.2f} x matmul peak; "
          f"{per_s / REFERENCE_ECG_PER_S:.1f}x the reference's ~{REFERENCE_ECG_PER_S} ECG/s")
    print(f"fp32 matmul again: {matmul_gflops():.1f} GFLOP/s (load drift check)")


if __name__ == "__main__":
    main()
