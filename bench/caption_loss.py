"""The caption loss's cost on a CPU: melp's softmax-in-place cross-entropy (losses.caption_loss)
against ``F.cross_entropy`` on fp32-cast logits, alternating.

    python bench/caption_loss.py [--rows 593] [--vocab 30523] [--rounds 3]

The default shape is one demo batch: 593 target tokens over MiniLM's vocabulary, bf16 logits as
the caption decoder gives them under autocast. Each figure is forward+backward, mean of 5.
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from melp.losses import caption_loss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=593)
    parser.add_argument("--vocab", type=int, default=30523)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default="bf16")
    args = parser.parse_args()
    dtype = torch.bfloat16 if args.dtype == "bf16" else torch.float32
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(args.rows, args.vocab, generator=g) * 3).to(dtype)
    targets = torch.randint(0, args.vocab, (args.rows,), generator=g)

    def reference():
        x = logits.clone().requires_grad_()
        (F.cross_entropy(x.float(), targets, reduction="sum") / args.rows).backward()

    def ours():
        x = logits.clone().requires_grad_()
        caption_loss(x, targets).backward()

    for r in range(args.rounds):
        ms = {}
        for name, fn in (("F.cross_entropy", reference), ("melp", ours)):
            fn()
            start = time.perf_counter()
            for _ in range(5):
                fn()
            ms[name] = (time.perf_counter() - start) / 5 * 1000
        print(f"round {r + 1}: F.cross_entropy {ms['F.cross_entropy']:.1f} ms, melp {ms['melp']:.1f} ms, "
              f"{ms['F.cross_entropy'] / ms['melp']:.2f}x")


if __name__ == "__main__":
    main()
