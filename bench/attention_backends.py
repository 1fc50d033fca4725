"""Why bf16 training on a CPU runs short attentions on the math kernel (models/attention.py).

    python bench/attention_backends.py [--rounds 2]

Times forward+backward of ``scaled_dot_product_attention`` on PyTorch's fused (flash) CPU kernel
and on the math kernel, alternating, for the attention shapes of the demo and of the paper model,
in fp32 and bf16; prints each round and the flash/math time ratio (> 1: math is faster).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_seconds  # noqa: E402

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
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
