"""Layers shared by the text-to-latent model (``model.py``) and the cell prior (``prior.py``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Attention", "mlp"]


class Attention(nn.Module):
    """Multi-head attention of queries x (B, Q, d) over a context (B, L, d) -> (B, Q, d)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads = heads
        self.dropout = dropout
        self.q = nn.Linear(d, d)
        self.kv = nn.Linear(d, 2 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        q = self.q(x).unflatten(-1, (self.heads, -1)).transpose(1, 2)  # (B, H, Q, d/H)
        k, v = self.kv(context).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 2 x (B, H, L, d/H)
        attn_mask = mask[:, None, None, :] if mask is not None else None  # (B, 1, 1, L), True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).flatten(2))  # (B, Q, d)


def mlp(d: int, ratio: int, dropout: float) -> nn.Sequential:
    """(..., d) -> (..., d): Linear to ``ratio * d``, GELU, Linear back, dropout."""
    return nn.Sequential(nn.Linear(d, ratio * d), nn.GELU(), nn.Linear(ratio * d, d), nn.Dropout(dropout))
