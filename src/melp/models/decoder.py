"""The caption decoder (DESIGN 1.4), CoCa's multimodal text decoder.

Each layer: a causal self-attention block, then a cross-attention block over the pooled ECG tokens
(pre-LN residual blocks, each with its MLP); a final LayerNorm and a vocabulary projection.
Its input is the causal text encoder's token states, so no position embedding of its own.

The vocabulary projection may cover only some token ids (``output_tokens``, e.g. those of the
training reports): its softmax is then the full vocabulary's with every other logit at -inf. On the
demo's CPU step the full projection (30,523 MiniLM tokens) was the largest single cost.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from melp.models.attention import Attention


class Block(nn.Module):
    """x + attn(LN(x)) then x + MLP(LN(x)); cross-attention when a context is given."""

    def __init__(self, width: int, heads: int, mlp_ratio: float, context_dim: int | None = None):
        super().__init__()
        self.norm1 = nn.LayerNorm(width)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim else None
        self.attn = Attention(width, heads, kv_dim=context_dim)
        self.norm2 = nn.LayerNorm(width)
        hidden = int(width * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def context_kv(self, context: Tensor) -> tuple[Tensor, Tensor]:
        return self.attn.project_kv(self.norm_context(context))

    def forward(self, x: Tensor, context: Tensor | None = None, kv=None, cache: dict | None = None) -> Tensor:
        if self.norm_context is None:  # causal self-attention
            x = x + self.attn(self.norm1(x), causal=True, cache=cache)
        else:
            if kv is None:
                kv = self.context_kv(context)
            x = x + self.attn(self.norm1(x), kv=kv)
        return x + self.mlp(self.norm2(x))


class CaptionDecoder(nn.Module):
    def __init__(self, input_dim: int, width: int, layers: int, heads: int, mlp_ratio: float,
                 context_dim: int, vocab_size: int, output_tokens: list[int] | None = None,
                 unk_id: int | None = None):
        """``output_tokens``: the token ids the projection covers (all ``vocab_size`` when None); a
        target outside them counts as ``unk_id``, which must be among them."""
        super().__init__()
        self.vocab_size = vocab_size
        # text-encoder states -> decoder width (identity when they already match)
        self.input_proj = nn.Linear(input_dim, width) if input_dim != width else nn.Identity()
        self.self_blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(layers))
        self.cross_blocks = nn.ModuleList(Block(width, heads, mlp_ratio, context_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        ids = rows = None
        if output_tokens is not None:
            ids = sorted(set(int(i) for i in output_tokens))
            if not ids or ids[0] < 0 or ids[-1] >= vocab_size:
                raise ValueError(f"decoder.output_tokens must be token ids in [0, {vocab_size})")
            if unk_id not in ids:
                raise ValueError(f"decoder.output_tokens must include the [UNK] id {unk_id}: targets outside "
                                 "them count as [UNK]")
            rows = torch.full((vocab_size,), ids.index(unk_id))  # token id -> row of the projection
            rows[ids] = torch.arange(len(ids))
            ids = torch.tensor(ids)
        self.register_buffer("output_ids", ids, persistent=False)
        self.register_buffer("target_rows", rows, persistent=False)
        self.vocab = nn.Linear(width, vocab_size if ids is None else len(ids), bias=False)  # bias-free, as the reference
        nn.init.normal_(self.vocab.weight, std=width ** -0.5)  # open_clip's intent; the reference left it uninitialised

    def hidden(self, text_states: Tensor, ecg_tokens: Tensor | None = None, state: dict | None = None) -> Tensor:
        """(B, L, input_dim) text states -> (B, L, width) final-normed states.

        ``state`` (generation): a dict created empty by the caller; the first call fills it with the
        cross-attention keys/values of ``ecg_tokens`` and each layer's self-attention cache, so that
        later calls pass only the new positions (and no ``ecg_tokens``)."""
        x = self.input_proj(text_states)
        if state is not None and "cross" not in state:
            state["cross"] = [blk.context_kv(ecg_tokens) for blk in self.cross_blocks]
            state["self"] = [{} for _ in self.self_blocks]
        for i, (sa, ca) in enumerate(zip(self.self_blocks, self.cross_blocks)):
            if state is None:
                x = ca(sa(x), context=ecg_tokens)
            else:
                x = ca(sa(x, cache=state["self"][i]), kv=state["cross"][i])
        return self.norm(x)

    def forward(self, text_states: Tensor, ecg_tokens: Tensor, targets: Tensor,
                ignore_index: int = -100) -> tuple[Tensor, Tensor]:
        """Logits only where a target exists: returns (logits (N, rows), targets (N,) as rows of the
        projection: the token ids themselves unless ``output_tokens`` is set)."""
        h = self.hidden(text_states, ecg_tokens)
        keep = targets != ignore_index
        targets = targets[keep]
        return self.vocab(h[keep]), targets if self.output_ids is None else self.target_rows[targets]

    def token_logits(self, h: Tensor) -> Tensor:
        """(..., width) final states -> (..., vocab_size) logits over every token id: -inf for the
        ids outside ``output_tokens``."""
        logits = self.vocab(h)
        if self.output_ids is None:
            return logits
        full = logits.new_full((*logits.shape[:-1], self.vocab_size), float("-inf"))
        return full.index_copy_(-1, self.output_ids, logits)

    def reorder_state(self, state: dict, index: Tensor) -> None:
        """Beam search: keep the rows ``index`` of every cached tensor."""
        state["cross"] = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state["cross"]]
        for cache in state["self"]:
            for key in list(cache):
                cache[key] = cache[key].index_select(0, index)
