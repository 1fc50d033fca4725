"""CPU cost of dropout and of the beat-level loss: melp's against torch's, alternating.

    python bench/dropout.py [--rounds 2]

Each figure is forward + backward, median of 7 calls, at the shapes of the demo's step (batch 32,
50 frames of width 256) and of the paper model's CPU bench (batch 8, 312 frames of width 768):
- dropout of the ECG encoder's features (``F.dropout`` vs melp.models.dropout);
- the ECG encoder's attention with dropout on its weights (SDPA, which falls back to its plain
  matmul-softmax kernel, vs melp's CPU path);
- the beat-level similarity (losses.local_similarity) against the formula it replaced, which
  formed every (report, ECG, sentence) context vector, at the demo's and the paper's batch (64).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from melp.losses import local_similarity
from melp.models.attention import attention_with_cpu_dropout
from melp.models.dropout import dropout


def contexts_formed(beats, sentences, mask, t1=4.0, t2=5.0):
    """The beat-level similarity as melp computed it before: the (B, B, S, D) contexts formed."""
    a = torch.einsum("jbd,ikd->ijbk", beats, sentences)
    a = a.masked_fill(~mask[:, None, None, :], float("-inf")).softmax(dim=-1)
    attn = (a * t1).softmax(dim=2)
    context = torch.einsum("ijbk,jbd->ijkd", attn, beats)
    cos = F.cosine_similarity(sentences[:, None], context, dim=-1)
    return (t2 * cos).masked_fill(~mask[:, None, :], float("-inf")).logsumexp(dim=-1)


def fwd_bwd_ms(fn, inputs, calls: int = 7) -> float:
    times = []
    for _ in range(calls + 1):
        start = time.perf_counter()
        out = fn(*inputs)
        out.backward(torch.ones_like(out))
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]) * 1000


def cases():
    g = torch.Generator().manual_seed(0)

    def rand(*shape):
        return torch.randn(*shape, generator=g).requires_grad_()

    def local(batch, beats, sentences, dim):
        mask = torch.rand(batch, sentences, generator=g) < 0.7
        mask[:, 0] = True
        return (rand(batch, beats, dim), rand(batch, sentences, dim), mask)

    qkv = [rand(8, 12, 312, 64) for _ in range(3)]
    return [
        ("dropout, demo (32, 50, 256)", lambda x: F.dropout(x, 0.1, True), lambda x: dropout(x, 0.1, True),
         (rand(32, 50, 256),)),
        ("dropout, paper (8, 312, 768)", lambda x: F.dropout(x, 0.1, True), lambda x: dropout(x, 0.1, True),
         (rand(8, 312, 768),)),
        ("attention p=0.1, paper (8, 12 heads, 312)",
         lambda q, k, v: F.scaled_dot_product_attention(q, k, v, dropout_p=0.1),
         lambda q, k, v: attention_with_cpu_dropout(q, k, v, None, 0.1), qkv),
        ("beat-level similarity, demo (32 x 13 beats, 6 sentences, 128)", contexts_formed, local_similarity,
         local(32, 13, 6, 128)),
        ("beat-level similarity, paper batch (64 x 12 beats, 8 sentences, 256)", contexts_formed,
         local_similarity, local(64, 12, 8, 256)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name, theirs, ours, inputs in cases():
        for r in range(args.rounds):
            before, after = fwd_bwd_ms(theirs, inputs), fwd_bwd_ms(ours, inputs)
            print(f"{name}, round {r + 1}: before {before:.1f} ms, melp {after:.1f} ms, {before / after:.2f}x")


if __name__ == "__main__":
    main()
