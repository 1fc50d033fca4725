"""Multi-head attention on PyTorch's fused scaled_dot_product_attention, shared by every block.

One module serves self-attention (optionally causal, with a key/value cache for generation) and
cross-attention (queries from ``x``, keys/values from a context of another width).
"""
from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from melp.models.dropout import kept, kept_scale, on_cpu_path

# On a CPU, PyTorch's fused (flash) attention kernel is the fastest forward, but in bf16 its
# backward is slow for short sequences: forward+backward at 47-128 keys took 1.2-4x as long as the
# plain matmul-softmax ("math") kernel, while in fp32, and from about 200 keys on, flash wins
# (bench/attention_backends.py). So bf16 training on a CPU uses math up to this many keys.
CPU_BF16_MATH_MAX_KEYS = 128


def cpu_has_amx() -> bool:
    """Whether this CPU has AMX tiles (torch's own check; False where torch does not offer it)."""
    return bool(getattr(torch.cpu, "_is_amx_tile_supported", lambda: False)())


def use_blocked_inference(q: Tensor) -> bool:
    """bf16 inference on a CPU without AMX (AVX-512 bf16): there the flash kernel ran at about a sixth
    of the bf16 matmul rate, and plain matmul-softmax in cache-sized blocks (blocked_attention) took
    about half its time at 312 frames; the paper ECG side, 1.06x / 1.09x faster per call at batch 1 / 16
    (medians of 5 alternated rounds, bench/attention_backends.py --inference). Not measured with AMX."""
    return (q.device.type == "cpu" and q.dtype == torch.bfloat16 and not torch.is_grad_enabled()
            and not cpu_has_amx())


def attention_backend(n_keys: int, dtype: torch.dtype, device: torch.device):
    """The context to run an attention of ``n_keys`` keys in (see CPU_BF16_MATH_MAX_KEYS)."""
    if (device.type == "cpu" and dtype == torch.bfloat16 and n_keys <= CPU_BF16_MATH_MAX_KEYS
            and torch.is_grad_enabled()):
        return sdpa_kernel(SDPBackend.MATH)
    return contextlib.nullcontext()


class Attention(nn.Module):
    def __init__(self, dim: int, heads: int, kv_dim: int | None = None, dropout: float = 0.0,
                 qkv_gain: float = 1.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.q = nn.Linear(dim, dim)
        self.k = nn.Linear(kv_dim or dim, dim)
        self.v = nn.Linear(kv_dim or dim, dim)
        self.out = nn.Linear(dim, dim)
        # Xavier-uniform projections and zero biases, as the reference's attention layers start
        # (fairseq's in its ECG encoder with qkv_gain 1/sqrt 2; nn.MultiheadAttention elsewhere).
        for proj in (self.q, self.k, self.v, self.out):
            nn.init.xavier_uniform_(proj.weight, gain=qkv_gain if proj is not self.out else 1.0)
            nn.init.zeros_(proj.bias)

    def _split(self, x: Tensor) -> Tensor:  # (B, T, D) -> (B, H, T, D/H)
        return x.unflatten(-1, (self.heads, -1)).transpose(1, 2)

    def project_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        return self._split(self.k(context)), self._split(self.v(context))

    def forward(self, x: Tensor, context: Tensor | None = None, causal: bool = False,
                kv: tuple[Tensor, Tensor] | None = None, cache: dict | None = None) -> Tensor:
        """``context``: cross-attention source (default: ``x``). ``kv``: precomputed context keys and
        values (cross-attention during generation). ``cache``: a dict that accumulates this layer's
        self-attention keys/values across calls, so each generation step feeds only new tokens."""
        q = self._split(self.q(x))
        if kv is not None:
            k, v = kv
        else:
            k, v = self.project_kv(x if context is None else context)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        mask, t_q, t_k = None, q.shape[2], k.shape[2]
        if causal and 1 < t_q < t_k:
            mask = causal_mask(t_q, t_k, x.device)
        causal = causal and 1 < t_q == t_k
        p = self.dropout if self.training else 0.0
        if on_cpu_path(q, p):
            y = attention_with_cpu_dropout(q, k, v, causal_mask(t_q, t_k, x.device) if causal else mask, p)
        elif use_blocked_inference(q):
            y = blocked_attention(q, k, v, causal_mask(t_q, t_k, x.device) if causal else mask)
        else:
            with attention_backend(t_k, q.dtype, q.device):
                y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p, is_causal=causal)
        return self.out(y.transpose(1, 2).flatten(2))


def causal_mask(t_q: int, t_k: int, device: torch.device) -> Tensor:
    """(t_q, t_k) bool: the queries are the last t_q of the t_k positions, each sees itself and earlier."""
    return torch.ones(t_q, t_k, dtype=torch.bool, device=device).tril(diagonal=t_k - t_q)


# The CPU path with dropout runs its (batch x head) slices in blocks of about this many bytes of
# attention weights, so that the softmax, the dropout and their gradients work in cache. The weights
# are recomputed in the backward pass instead of kept: two fewer (B, H, T, T) tensors per layer.
BLOCK_BYTES = 2 << 20
# blocked_attention's blocks: at 312 frames, 1 MiB blocks took 1.2 ms per batch-1 call against
# 2.0 ms for 2 MiB and 1.5 ms for 0.5 MiB (ad-hoc, AVX-512 bf16 CPU); equal at batch 16.
INFERENCE_BLOCK_BYTES = 1 << 20


def _probabilities(q_scaled: Tensor, k: Tensor, mask: Tensor | None) -> Tensor:
    scores = q_scaled @ k.transpose(1, 2)
    if mask is not None:
        scores.masked_fill_(~mask, float("-inf"))
    return scores.softmax(dim=-1)


class _BlockedDropoutAttention(torch.autograd.Function):
    """(N, Tq, d) queries, (N, Tk, d) keys and values, a (Tq, Tk) mask or None, (N, Tq, Tk) uint8 kept
    flags: softmax(q k^T / sqrt(d)) times the flags (the dropped weights zeroed), times v, times 1/(1-p)."""

    @staticmethod
    def forward(ctx, q, k, v, mask, keep, keep_scale: float):
        ctx.keep_scale = keep_scale
        scale, out = q.shape[-1] ** -0.5, []
        for block in _blocks(q, k):
            weights = _probabilities(q[block] * scale, k[block], mask).mul_(keep[block])
            out.append(weights @ v[block])
        out = torch.cat(out).mul_(keep_scale)
        ctx.save_for_backward(q, k, v, mask, keep, out)
        return out

    @staticmethod
    def backward(ctx, grad):
        q, k, v, mask, keep, out = ctx.saved_tensors
        # The softmax gradient's row sums, sum_j dW_ij P_ij, are grad_i . out_i (as in flash attention's
        # backward): a (N, Tq) dot product instead of a pass over the (N, Tq, Tk) weights.
        row_sums = (grad * out).sum(-1, keepdim=True)
        scale, grad = q.shape[-1] ** -0.5, grad * ctx.keep_scale
        dq, dk, dv = [], [], []
        with torch.autocast("cpu", enabled=False):
            for block in _blocks(q, k):
                q_scaled = q[block] * scale
                prob = _probabilities(q_scaled, k[block], mask)
                d_weights = (grad[block] @ v[block].transpose(1, 2)).mul_(keep[block])
                d_scores = d_weights.sub_(row_sums[block]).mul_(prob)  # the softmax's gradient
                dv.append(prob.mul_(keep[block]).transpose(1, 2) @ grad[block])  # prob's last use
                dq.append((d_scores @ k[block]).mul_(scale))
                dk.append(d_scores.transpose(1, 2) @ q_scaled)
        return torch.cat(dq), torch.cat(dk), torch.cat(dv), None, None, None


def _blocks(q: Tensor, k: Tensor, block_bytes: int = BLOCK_BYTES) -> list[slice]:
    step = max(1, block_bytes // (q.shape[1] * k.shape[1] * q.element_size()))
    return [slice(i, i + step) for i in range(0, q.shape[0], step)]


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None) -> Tensor:
    """SDPA's value without dropout or gradients, as plain matmul-softmax in cache-sized blocks (the
    softmax's sums run in fp32 inside its bf16 kernel; the scores are rounded to q's dtype, so in bf16
    this is less exact than flash: the embeddings stay within cosine 0.999 of fp32, tested).
    ``mask``: (Tq, Tk) or None."""
    *batch, t_q, _ = q.shape
    q3, k3, v3 = (t.reshape(-1, *t.shape[-2:]) for t in (q, k, v))
    out = q3.new_empty(q3.shape[0], t_q, v3.shape[-1])
    scale = q.shape[-1] ** -0.5
    for block in _blocks(q3, k3, INFERENCE_BLOCK_BYTES):
        torch.bmm(_probabilities(q3[block] * scale, k3[block], mask), v3[block], out=out[block])
    return out.view(*batch, t_q, v3.shape[-1])


def attention_with_cpu_dropout(q: Tensor, k: Tensor, v: Tensor, mask: Tensor | None, p: float) -> Tensor:
    """What SDPA computes with ``attn_mask=mask, dropout_p=p`` (its plain matmul-softmax kernel: its
    fused CPU kernel has no dropout), with melp's cheaper CPU draws (melp.models.dropout), in blocks
    that stay in cache (BLOCK_BYTES): forward and backward 2.0-2.3x as fast as SDPA's at the paper ECG
    encoder's 312 frames (bench/dropout.py). ``mask``: (Tq, Tk) or None."""
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else q.dtype
    *batch, t_q, _ = q.shape
    q3, k3, v3 = (t.to(dtype).reshape(-1, *t.shape[-2:]) for t in (q, k, v))
    keep = kept((q3.shape[0], t_q, k3.shape[1]), p)
    with torch.autocast("cpu", enabled=False):
        out = _BlockedDropoutAttention.apply(q3, k3, v3, mask, keep, kept_scale(p))
    return out.view(*batch, t_q, v3.shape[-1])
