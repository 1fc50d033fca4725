"""Training-step speed of the paper-size MELP on this machine, against the authors' code in the same run.

One step = forward (the three losses), backward, AdamW, at batch 8 on the 8 reports of
bench/common.py. The text side is a randomly initialised BERT-base of heart_bert's shape. With
``--reference DIR`` (the authors' code built as shared/refbench/README.md says) each round times
the authors' step (bench/authors_reference.py, a subprocess), then melp's, for each precision:
the figures of every round are printed, then the medians and the ratio. melp's figure also comes
as a fraction of the matmul rate of its precision measured right before each step (a
machine-independent figure: how close to this CPU's matmul speed the whole step runs).

melp's process keeps freed host memory as ``melp pretrain`` does (``trainer.keep_host_memory``,
src/melp/train/host_memory.py) unless ``--system-allocator``; the authors' subprocess gets the
system's settings unless ``--reference-keep-memory`` gives it the same two (as environment
variables), which measures how much of the ratio is the allocator.

``--breakdown`` then profiles one more step of melp per precision and splits its time into matrix
products (the ops the FLOP counter counts) and the rest, and times the fused AdamW step alone: how
much of the gap to the matmul rate is the products' own efficiency at this model's shapes and how
much the other work.

``--compile`` also times a second copy of melp's model with its ECG encoder compiled the way
``trainer.compile_ecg_encoder: true`` does it (``torch.compile``, static shapes; compiled during its
warm-up step).

    python bench/train_step.py [--reference /tmp/refbench] [--precisions fp32 bf16] [--steps 3] [--rounds 2] [--compile]
                               [--system-allocator] [--reference-keep-memory] [--breakdown]
"""
from __future__ import annotations

import argparse
import contextlib
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
from melp.train.host_memory import FRESH_PROCESS_ENV, keep_freed_host_memory

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from common import REPORTS, flop_counter, matmul_gflops, run_authors  # noqa: E402

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


def authors_step(reference: str, python: str, batch: int, steps: int, precision: str,
                 keep_memory: bool = False) -> list[float]:
    arguments = ["train", "--batch", str(batch), "--steps", str(steps)] + (["--bf16"] if precision == "bf16" else [])
    return run_authors(python, reference, arguments, FRESH_PROCESS_ENV if keep_memory else None)["step_s"]


class OurStep:
    """The paper model, its AdamW (fused: one kernel over all parameters) and a fixed batch."""

    def __init__(self, batch: int, compile: bool = False):
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            config = MELPConfig.from_preset("paper")
            config.text.source = str(build_random_text_model(tmp, hidden_size=768, layers=12, heads=12))
            self.model = MELP(config).train()
        if compile:
            self.model.ecg_encoder.compile(dynamic=False)  # as pretrain does for trainer.compile_ecg_encoder
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        self.opt = torch.optim.AdamW(trainable, lr=2e-4, betas=(0.9, 0.95), weight_decay=0.2, fused=True)
        self.ecg = torch.rand(batch, 12, config.preprocess.n_samples)
        self.tokens = self.model.tokenize([REPORTS[i % len(REPORTS)] for i in range(batch)])
        self.flops: dict[str, float] = {}
        print(f"melp paper model{' (ECG encoder compiled)' if compile else ''}: {sum(p.numel() for p in self.model.parameters()) / 1e6:.1f} M parameters, "
              f"{sum(p.numel() for p in trainable) / 1e6:.1f} M trainable; batch {batch}, reports padded to "
              f"{self.tokens['input_ids'].shape[1]} tokens")

    def forward_backward(self, precision: str) -> None:
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
        with autocast:
            loss = self.model(self.ecg, self.tokens)["loss"]
        loss.backward()

    def step(self, precision: str) -> None:
        self.opt.zero_grad(set_to_none=True)
        self.forward_backward(precision)
        self.opt.step()

    def time(self, precision: str, steps: int) -> tuple[list[float], list[float]]:
        """Seconds per step and, per step, the fraction of the matmul rate measured just before it."""
        if precision not in self.flops:
            with flop_counter() as counter:
                self.forward_backward(precision)
            self.flops[precision] = float(counter.get_total_flops())
        self.step(precision)  # warm-up
        times, fractions = [], []
        for _ in range(steps):
            rate = matmul_gflops(DTYPES[precision])
            start = time.perf_counter()
            self.step(precision)
            times.append(time.perf_counter() - start)
            fractions.append(self.flops[precision] / times[-1] / 1e9 / rate)
        return times, fractions


# The ops that carry the step's FLOPs (common.flop_counter): matrix products, convolutions, attention.
PRODUCT_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "convolution", "flash_attention")


def breakdown(ours: OurStep, precision: str) -> None:
    """One profiled step: seconds in the products against the rest, and the fused AdamW alone."""
    rate = matmul_gflops(DTYPES[precision])
    with torch.profiler.profile() as prof:
        start = time.perf_counter()
        ours.step(precision)
        step_s = time.perf_counter() - start
    self_s = {e.key: e.self_cpu_time_total / 1e6 for e in prof.key_averages()}
    products = sum(t for op, t in self_s.items() if any(name in op for name in PRODUCT_OPS))
    rest = sorted(((t, op) for op, t in self_s.items() if not any(name in op for name in PRODUCT_OPS)), reverse=True)
    adam = []
    for _ in range(5):  # the gradients of the profiled step are still there
        start = time.perf_counter()
        ours.opt.step()
        adam.append(time.perf_counter() - start)
    ideal = ours.flops[precision] / rate / 1e9
    print(f"breakdown, {precision}: step {step_s:.2f} s under the profiler; at the {rate:.0f} GFLOP/s matmul rate "
          f"its {ours.flops[precision] / 1e12:.2f} TFLOP take {ideal:.2f} s (0.9 of the rate: a step of {ideal / 0.9:.2f} s)")
    print(f"  matrix products {products:.2f} s (= {ideal / products:.2f} x the rate on their own), everything else "
          f"{sum(t for t, _ in rest):.2f} s; fused AdamW alone {float(np.median(adam)):.3f} s (median of 5)")
    print("  largest of the rest: " + ", ".join(f"{op.removeprefix('aten::')} {t:.3f} s" for t, op in rest[:8]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", default=None, help="the authors' reference folder (shared/refbench/README.md)")
    parser.add_argument("--reference-python", default=None, help="its Python (default REFERENCE/venv/bin/python)")
    parser.add_argument("--precisions", nargs="+", choices=list(DTYPES), default=["fp32", "bf16"],
                        help="bf16: autocast for both (the paper trains in bf16 mixed precision)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps per measurement (after one warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--compile", action="store_true", help="also time melp with its ECG encoder compiled")
    parser.add_argument("--breakdown", action="store_true",
                        help="then profile one step: products against the rest, and AdamW alone")
    parser.add_argument("--system-allocator", action="store_true",
                        help="melp without trainer.keep_host_memory's settings (the system's malloc and page sizes)")
    parser.add_argument("--reference-keep-memory", action="store_true",
                        help="give the authors' subprocess the same settings as melp's (environment variables)")
    args = parser.parse_args()
    kept = False if args.system_allocator else keep_freed_host_memory()
    print(f"host memory: melp {'keeps freed memory' if kept else 'system settings'}, authors "
          f"{'keep freed memory' if args.reference_keep_memory else 'system settings'}")
    python = args.reference_python or (str(Path(args.reference) / "venv/bin/python") if args.reference else None)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; fp32 matmul {matmul_gflops():.0f} "
          f"GFLOP/s, bf16 matmul {matmul_gflops(torch.bfloat16):.0f} GFLOP/s")
    variants = {"melp": OurStep(args.batch)}
    if args.compile:
        variants["melp compiled"] = OurStep(args.batch, compile=True)
        variants["melp compiled"].flops = variants["melp"].flops  # same FLOPs: counted on the eager model

    results = {p: {"authors": [], **{name: [] for name in variants}, **{f"{name} fraction": [] for name in variants}}
               for p in args.precisions}
    for r in range(args.rounds):
        for precision in args.precisions:
            load = os.getloadavg()[0]
            res = results[precision]
            line = f"round {r + 1}, {precision} (load average {load:.2f}): "
            if args.reference:
                theirs = authors_step(args.reference, python, args.batch, args.steps, precision,
                                      args.reference_keep_memory)
                res["authors"].append(float(np.median(theirs)))
                line += f"authors {', '.join(f'{t:.2f}' for t in theirs)} s"
            for name, ours in variants.items():
                times, fractions = ours.time(precision, args.steps)
                res[name].append(float(np.median(times)))
                res[f"{name} fraction"].append(float(np.median(fractions)))
                line += (f" | {name} {', '.join(f'{t:.2f}' for t in times)} s "
                         f"({res[f'{name} fraction'][-1]:.2f} x the {precision} matmul rate)")
                if args.reference:
                    line += f", ratio {res['authors'][-1] / res[name][-1]:.2f}x"
            print(line, flush=True)

    print()
    for precision, res in results.items():
        for name, ours in variants.items():
            melp_s = float(np.median(res[name]))
            line = (f"train step, {precision}: {name} {melp_s:.2f} s/step (median of {args.rounds} rounds), "
                    f"{ours.flops[precision] / 1e12:.2f} TFLOP/step = {np.median(res[f'{name} fraction']):.2f} x "
                    f"the {precision} matmul rate")
            if args.reference:
                authors_s = float(np.median(res["authors"]))
                line += (f"; authors {authors_s:.2f} s/step; {name} is {authors_s / melp_s:.2f}x faster "
                         f"(per round: {', '.join(f'{a / m:.2f}x' for a, m in zip(res['authors'], res[name]))})")
            print(line)
    if args.breakdown:
        for precision in args.precisions:
            breakdown(variants["melp"], precision)


if __name__ == "__main__":
    main()
