"""The contrastive loss of the alignment (``train.py`` documents how the terms combine): symmetric
multi-positive InfoNCE between text and image K-bit codes."""

from __future__ import annotations

import torch

__all__ = ["code_losses"]


def code_losses(
    text_logits: torch.Tensor, image_logits: torch.Tensor, image_ids: torch.Tensor, temperature: float,
) -> torch.Tensor:
    """(B, K) text / image code logits, (B,) image id of each row -> symmetric InfoNCE (a scalar)
    over straight-through codes: forward, the hard ±1 codes; backward, the gradient of tanh.

    Row i's positives are all rows showing the same image (at least itself)."""
    t, v = torch.tanh(text_logits), torch.tanh(image_logits)  # (B, K) relaxed codes
    t = t + (torch.where(t >= 0, 1.0, -1.0) - t).detach()  # forward: hard ±1; backward: d tanh
    v = v + (torch.where(v >= 0, 1.0, -1.0) - v).detach()
    logits = (t @ v.T) / (t.shape[1] * temperature)  # (B, B): (1 - 2 Hamming / K) / T
    positive = image_ids[:, None] == image_ids[None, :]  # (B, B)

    def nce(lg: torch.Tensor) -> torch.Tensor:
        return (torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~positive, float("-inf")), 1)).mean()

    return 0.5 * (nce(logits) + nce(logits.T))
