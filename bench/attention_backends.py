"""Which attention kernel each CPU case runs on (models/attention.py).

    python bench/attention_backends.py [--rounds 2] [--inference]

Training (default): why bf16 training on a CPU runs short attentions on the math kernel. Times
forward+backward of ``scaled_dot_product_attention`` on PyTorch's fused (flash) CPU kernel and on
the math kernel, alternating, for the attention shapes of the demo and of the paper model, in fp32
and bf16; prints each round and the flash/math time ratio (> 1: math is faster).

``--inference``: why bf16 inference on a CPU without AMX runs ``blocked_attention``. Times the paper
ECG encoder and beat pooler as bf16 inference runs them (melp.models.fast_inference), with their
attention on the flash kernel and on blocked_attention, alternating, at batch 1 and 16 (the
flash/blocked ratio: > 1, blocked is faster), keeping freed memory as the ``melp`` commands do.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_seconds  # noqa: E402

from melp.models import attention  # noqa: E402
from melp.models.config import MELPConfig  # noqa: E402
from melp.models.ecg_encoder import ECGEncoder  # noqa: E402
from melp.models.fast_inference import inference_side  # noqa: E402
from melp.models.poolers import AttentionalPooler  # noqa: E402
from melp.train.host_memory import keep_freed_host_memory  # noqa: E402

SHAPES = {  # (batch, heads, tokens, head width), causal, key-padding mask
    "demo ECG encoder, 50 frames": ((32, 4, 50, 64), False, False),
    "demo text (MiniLM), 47 tokens": ((32, 12, 47, 32), False, True),
    "demo caption decoder, causal": ((32, 4, 47, 32), True, False),
    "paper text (BERT-base), 96 tokens": ((8, 12, 96, 64), False, True),
    "128 keys": ((8, 12, 128, 64), False, True),
    "paper ECG encoder, 312 frames": ((8, 12, 312, 64), False, False),
}


def time_step(shape, causal: bool, masked: bool, dtype, backend, steps: int = 5) -> float:
    q, k, v = (torch.randn(*shape, dtype=dtype, requires_grad=True) for _ in range(3))
    mask = torch.ones(shape[0], 1, shape[2], shape[2], dtype=torch.bool) if masked else None
    backends = [backend, SDPBackend.MATH] if masked else [backend]  # flash takes no mask on some builds

    def step():
        with sdpa_kernel(backends):
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)
        y.sum().backward()

    return median_seconds(step, steps) * 1000


def time_inference(batches: list[int], rounds: int) -> None:
    """The paper ECG encoder's bf16 inference copy on normalised windows, its attention switched between
    the two paths in one process (alternating calls: a kernel timed alone also times the allocator)."""
    config = MELPConfig.from_preset("paper")
    encoder = ECGEncoder(config.ecg)
    pooler = AttentionalPooler(config.embed_dim, config.ecg.width, config.poolers.beat_heads, config.poolers.n_beats)
    side = inference_side(encoder, pooler, encoder.n_frames(config.preprocess.n_samples), bf16=True, compile=False)
    blocked = attention.use_blocked_inference
    paths = {"flash": lambda q: False, "blocked": blocked}
    for batch in batches:
        x = torch.randn(batch, 12, config.preprocess.n_samples)
        out, times = {}, {name: [] for name in paths}
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            for r in range(rounds):
                for name, rule in paths.items():
                    attention.use_blocked_inference = rule
                    out[name] = side(x).float()  # warm-up
                    start = time.perf_counter()
                    for _ in range(max(2, 16 // batch)):
                        side(x)
                    times[name].append((time.perf_counter() - start) * 1000 / max(2, 16 // batch))
                print(f"paper ECG side, batch {batch:<3} bf16 round {r + 1}: flash {times['flash'][-1]:7.1f}  "
                      f"blocked {times['blocked'][-1]:7.1f} ms per call, flash/blocked "
                      f"{times['flash'][-1] / times['blocked'][-1]:.2f}")
        attention.use_blocked_inference = blocked
        cos = F.cosine_similarity(out["flash"].flatten(1), out["blocked"].flatten(1)).min().item()
        print(f"  smallest cosine between the two paths' pooled outputs: {cos:.5f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inference", action="store_true", help="bf16 forward without gradients")
    args = parser.parse_args()
    if args.inference:
        keep_freed_host_memory()  # as the melp commands that embed do
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, AMX {attention.cpu_has_amx()}")
        time_inference([1, 16], args.rounds)
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; forward+backward, median of 5, ms")
    for name, (shape, causal, masked) in SHAPES.items():
        for dtype in (torch.float32, torch.bfloat16):
            for r in range(args.rounds):
                flash = time_step(shape, causal, masked, dtype, SDPBackend.FLASH_ATTENTION)
                math_ = time_step(shape, causal, masked, dtype, SDPBackend.MATH)
                print(f"{name:<36} {str(dtype)[6:]:<9} round {r + 1}: flash {flash:7.2f}  math {math_:7.2f}  "
                      f"flash/math {flash / math_:.2f}")


if __name__ == "__main__":
    main()
