"""CoCa-style attentional pooler (DESIGN 1.2): learned queries cross-attend to the ECG tokens."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from melp.models.attention import Attention


class AttentionalPooler(nn.Module):
    def __init__(self, d_model: int, context_dim: int, heads: int, n_queries: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(n_queries, d_model))  # unit scale: LayerNormed before use
        self.norm_q = nn.LayerNorm(d_model)
        self.norm_context = nn.LayerNorm(context_dim)
        self.attn = Attention(d_model, heads, kv_dim=context_dim)

    def forward(self, context: Tensor) -> Tensor:
        """(B, T, context_dim) -> (B, n_queries, d_model)."""
        q = self.norm_q(self.queries).expand(context.shape[0], -1, -1)
        return self.attn(q, context=self.norm_context(context))
