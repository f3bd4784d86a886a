"""The alignment losses (``train.py`` documents how they combine and what was measured).

* ``bit_losses``: BCE of the predicted latent bits, winner-takes-all over H hypotheses.
* ``code_losses``: symmetric multi-positive InfoNCE between text and image K-bit codes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bit_losses", "code_losses"]


def bit_losses(
    all_logits: torch.Tensor, scores: torch.Tensor | None, target: torch.Tensor, loser_weight: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hypotheses' bit logits (B, H, C, h, w), their scores (B, H) or None, target bits (B, C, h, w)
    -> (BCE, choice cross-entropy, the top-scoring hypothesis' logits (B, C, h, w)).

    H = 1: the plain BCE and a zero choice loss. H > 1: the winner's BCE (per caption, the closest
    hypothesis) + ``loser_weight`` * the mean BCE of all, and the cross-entropy of the scores
    against the winner."""
    if scores is None:
        bit_logits = all_logits[:, 0]
        return F.binary_cross_entropy_with_logits(bit_logits, target.float()), all_logits.new_zeros(()), bit_logits
    per = F.binary_cross_entropy_with_logits(all_logits, target[:, None].float().expand_as(all_logits),
                                             reduction="none").flatten(2).mean(2)  # (B, H)
    winner = per.detach().argmin(1)  # (B,)
    bce = per.gather(1, winner[:, None]).mean() + loser_weight * per.mean()
    choice = F.cross_entropy(scores, winner)
    top = scores.detach().argmax(1)  # (B,)
    bit_logits = all_logits[torch.arange(len(top), device=top.device), top]  # (B, C, h, w)
    return bce, choice, bit_logits


def code_losses(
    text_logits: torch.Tensor, image_logits: torch.Tensor, image_ids: torch.Tensor, temperature: float,
    straight_through: bool = False,
) -> torch.Tensor:
    """(B, K) text / image code logits, (B,) image id of each row -> symmetric InfoNCE (a scalar).

    Row i's positives are all rows showing the same image (at least itself)."""
    t, v = torch.tanh(text_logits), torch.tanh(image_logits)  # (B, K) relaxed codes
    if straight_through:
        t = t + (torch.where(t >= 0, 1.0, -1.0) - t).detach()  # forward: hard ±1; backward: d tanh
        v = v + (torch.where(v >= 0, 1.0, -1.0) - v).detach()
    logits = (t @ v.T) / (t.shape[1] * temperature)  # (B, B): (1 - 2 Hamming / K) / T for hard codes
    positive = image_ids[:, None] == image_ids[None, :]  # (B, B)

    def nce(lg: torch.Tensor) -> torch.Tensor:
        return (torch.logsumexp(lg, 1) - torch.logsumexp(lg.masked_fill(~positive, float("-inf")), 1)).mean()

    return 0.5 * (nce(logits) + nce(logits.T))
