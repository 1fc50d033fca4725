"""The caption decoder (DESIGN 1.4), CoCa's multimodal text decoder.

Each layer: a causal self-attention block, then a cross-attention block over the pooled ECG tokens
(pre-LN residual blocks, each with its MLP); a final LayerNorm and a vocabulary projection.
Its input is the causal text encoder's token states, so no position embedding of its own.
"""
from __future__ import annotations

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
                 context_dim: int, vocab_size: int):
        super().__init__()
        # text-encoder states -> decoder width (identity when they already match)
        self.input_proj = nn.Linear(input_dim, width) if input_dim != width else nn.Identity()
        self.self_blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(layers))
        self.cross_blocks = nn.ModuleList(Block(width, heads, mlp_ratio, context_dim) for _ in range(layers))
        self.norm = nn.LayerNorm(width)
        self.vocab = nn.Linear(width, vocab_size, bias=False)  # bias-free, as the reference
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
        """Logits only where a target exists: returns (logits (N, V), targets (N,))."""
        h = self.hidden(text_states, ecg_tokens)
        keep = targets != ignore_index
        return self.vocab(h[keep]), targets[keep]

    def reorder_state(self, state: dict, index: Tensor) -> None:
        """Beam search: keep the rows ``index`` of every cached tensor."""
        state["cross"] = [(k.index_select(0, index), v.index_select(0, index)) for k, v in state["cross"]]
        for cache in state["self"]:
            for key in list(cache):
                cache[key] = cache[key].index_select(0, index)
