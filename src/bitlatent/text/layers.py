"""Layers shared by the text-to-latent model (``model.py``) and the cell prior (``prior.py``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Attention", "mlp", "attend_one", "additive_mask"]

MASKED = -1e9
"""Additive score of a masked position: exp underflows to exactly 0 in float32, and unlike -inf a
row with nothing visible gives no NaN to guard against (which the exported graph would check)."""


def additive_mask(visible: torch.Tensor) -> torch.Tensor:
    """bool (..., L), True = attend -> float32 (..., L): 0 where visible, ``MASKED`` elsewhere."""
    return torch.where(visible, 0.0, MASKED)


def attend_one(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """Attention of one query per head, written out (the exported per-cell graph stays small):
    q (B, H, 1, e), k and v (B, H, L, e), bias broadcastable to (B, H, 1, L) -> (B, H, 1, e).
    Every row needs one visible position (bias 0)."""
    scores = torch.matmul(q, k.transpose(-1, -2)) * (q.shape[-1] ** -0.5) + bias  # (B, H, 1, L)
    return torch.matmul(torch.softmax(scores, dim=-1), v)


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
        k, v = self.keys_values(context)  # 2 x (B, H, L, d/H)
        attn_mask = mask[:, None, None, :] if mask is not None else None  # (B, 1, 1, L), True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(y.transpose(1, 2).flatten(2))  # (B, Q, d)

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The context's keys and values, context (B, L, d) -> 2 x (B, H, L, d/H)."""
        k, v = self.kv(context).unflatten(-1, (2, self.heads, -1)).permute(2, 0, 3, 1, 4)
        return k, v

    def one_query(self, x: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``forward`` for one query per row, x (B, d), inference only, over the context's
        ``keys_values`` (computed once for many queries), with the mask as an additive ``bias``
        (B, 1, 1, L) (``additive_mask``) -> (B, d)."""
        d = x.shape[-1]
        q = self.q(x).reshape(-1, self.heads, 1, d // self.heads)  # (B, H, 1, d/H): no transpose needed
        return self.proj(attend_one(q, keys, values, bias).reshape(-1, d))


def mlp(d: int, ratio: int, dropout: float) -> nn.Sequential:
    """(..., d) -> (..., d): Linear to ``ratio * d``, GELU, Linear back, dropout."""
    return nn.Sequential(nn.Linear(d, ratio * d), nn.GELU(), nn.Linear(ratio * d, d), nn.Dropout(dropout))
