"""A table of latent logits for the samples being fitted, with per-row Adam state.

The table holds ``n`` rows, one per sample *currently being fitted* (a pretraining subset, or
one chunk of a shard), never the whole dataset: memory is ``3 * n * C*h*w`` floats (logits and
the two Adam moments) plus, when tracking the best bits, ``n * C*h*w`` bytes. Each row has its
own Adam step count, so a row updated once per epoch gets the same bias correction as one
updated every step. Only the rows in a batch are read and written (sparse updates). Once a
stage ends, the table is exported as packed bits (``packed()``), never as float logits.

Every row starts from one random pattern (``randn(C, h, w) * init_std`` from ``seed``): bits that
no image content decides then end alike across images, which is what makes them predictable from
text. Each row owns its storage, so rows part as they are updated.
"""

from __future__ import annotations

import numpy as np
import torch

from .binary import LatentSpec, logits_to_bits, pack_bits

__all__ = ["LatentTable", "RATE_MARGIN"]

RATE_MARGIN = 0.1
"""Logit margin of the rate term: a bit on the starting pattern is left alone once its logit is at
least this far on the pattern's side (so it does not wobble across 0)."""


class LatentTable:
    """Logits ``(n, C, h, w)`` + Adam moments + per-row step counts (+ best bits so far)."""

    def __init__(
        self,
        n: int,
        spec: LatentSpec,
        *,
        init_std: float = 0.1,
        seed: int = 0,
        device: str | torch.device = "cpu",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        clip: float | None = 1.0,
        track_best: bool = False,
    ):
        self.spec = spec
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)
        self.clip = clip
        self.track_best = track_best
        g = torch.Generator().manual_seed(int(seed))
        pattern = torch.randn(1, *spec.shape, generator=g) * init_std  # (1, C, h, w), drawn on CPU: same on any device
        logits = pattern.expand(n, *spec.shape).clone()  # (n, C, h, w)
        # the starting pattern's bits as signs (1, C, h, w): what the rate term pulls toward
        self.reference = torch.where(pattern >= 0, 1.0, -1.0).to(device)
        if clip is not None:
            logits = logits.clamp(-clip, clip)
        self.logits = logits.to(device)
        self.exp_avg = torch.zeros_like(self.logits)
        self.exp_avg_sq = torch.zeros_like(self.logits)
        self.steps = torch.zeros(n, dtype=torch.int64, device=device)  # Adam step count per row
        if track_best:
            self.best_loss = torch.full((n,), float("inf"), device=device)  # (n,)
            self.best_bits = self.logits >= 0  # (n, C, h, w) bool

    def __len__(self) -> int:
        return self.logits.shape[0]

    def rate(self, logits: torch.Tensor) -> torch.Tensor:
        """The rate term of logits (B, C, h, w) -> (B,): the mean over bits of
        ``relu(RATE_MARGIN - logit * reference)``. It is 0 for a latent whose bits all sit firmly on
        the starting pattern and grows with every bit the image moves off it, so ``rate_weight``
        times it makes a bit leave the pattern only where the image pays for it in MSE. Latents that
        share most bits with one pattern cost fewer bits under an entropy model and are easier for
        the text model's prior to learn."""
        return torch.relu(RATE_MARGIN - logits * self.reference).flatten(1).mean(1)

    def off_reference(self, logits: torch.Tensor) -> torch.Tensor:
        """Hard counterpart of ``rate``: the fraction of each latent's bits (B,) that differ from the
        starting pattern's."""
        return ((logits >= 0) != (self.reference > 0)).flatten(1).float().mean(1)

    @property
    def device(self) -> torch.device:
        return self.logits.device

    # ------------------------------------------------------------------ reading / updating rows

    def gather(self, rows: torch.Tensor) -> torch.Tensor:
        """A leaf copy of the logits of ``rows`` (B,) -> (B, C, h, w) with ``requires_grad``;
        backpropagate into it, then pass its ``.grad`` to ``step``."""
        return self.logits.index_select(0, rows).detach().requires_grad_(True)

    @torch.no_grad()
    def step(self, rows: torch.Tensor, grad: torch.Tensor, lr: float) -> None:
        """Adam update of ``rows`` (B,) only, with their gradient (B, C, h, w).

        ``grad`` should be the gradient of each sample's *own* loss (not of a batch mean), so a
        latent's update does not depend on the batch size. Rows must be unique.
        """
        b1, b2 = self.betas
        grad = grad.to(self.logits.dtype)
        t = self.steps.index_select(0, rows) + 1  # (B,)
        m = self.exp_avg.index_select(0, rows).mul_(b1).add_(grad, alpha=1 - b1)
        v = self.exp_avg_sq.index_select(0, rows).mul_(b2).addcmul_(grad, grad, value=1 - b2)
        tf = t.to(torch.float64)
        bc1 = (1 - b1**tf).to(grad.dtype).view(-1, 1, 1, 1)  # (B, 1, 1, 1)
        bc2 = (1 - b2**tf).to(grad.dtype).view(-1, 1, 1, 1)
        update = (m / bc1) / ((v / bc2).sqrt_() + self.eps)
        logits = self.logits.index_select(0, rows).sub_(update, alpha=lr)
        if self.clip is not None:
            logits.clamp_(-self.clip, self.clip)
        self.logits.index_copy_(0, rows, logits)
        self.exp_avg.index_copy_(0, rows, m)
        self.exp_avg_sq.index_copy_(0, rows, v)
        self.steps.index_copy_(0, rows, t)

    @torch.no_grad()
    def update_best(self, rows: torch.Tensor, losses: torch.Tensor, logits: torch.Tensor) -> None:
        """Keep, per row, the hard bits with the lowest loss seen: ``losses`` (B,) is the loss of
        the hard bits of ``logits`` (B, C, h, w) (the logits *before* the update that followed)."""
        if not self.track_best:
            raise RuntimeError("this LatentTable does not track the best bits")
        losses = losses.detach().to(self.best_loss.dtype)
        better = losses < self.best_loss.index_select(0, rows)  # (B,)
        if better.any():
            r = rows[better]
            self.best_loss.index_copy_(0, r, losses[better])
            self.best_bits.index_copy_(0, r, logits.detach()[better] >= 0)

    # ------------------------------------------------------------------ export

    def bits(self, best: bool = True) -> np.ndarray:
        """uint8 bits (n, C, h, w): the best bits when tracked and ``best``, else the signs of the logits."""
        if best and self.track_best:
            return self.best_bits.to(torch.uint8).cpu().numpy()
        return logits_to_bits(self.logits)

    def signs(self, best: bool = True) -> torch.Tensor:
        """Float ±1 (n, C, h, w) on the table's device."""
        b = self.best_bits if (best and self.track_best) else self.logits >= 0
        return b.to(torch.float32) * 2 - 1

    def packed(self, best: bool = True) -> np.ndarray:
        """Packed uint8 (n, spec.bytes_per_image), see ``binary.pack_bits``."""
        return pack_bits(self.bits(best), self.spec.bit_order)

    # ------------------------------------------------------------------ checkpointing

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {"logits": self.logits, "exp_avg": self.exp_avg, "exp_avg_sq": self.exp_avg_sq, "steps": self.steps}
        if self.track_best:
            state["best_loss"] = self.best_loss
            state["best_bits"] = self.best_bits.to(torch.uint8)
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name in ("logits", "exp_avg", "exp_avg_sq", "steps"):
            if state[name].shape != getattr(self, name).shape:
                raise ValueError(f"latent table {name}: shape {tuple(state[name].shape)} != {tuple(getattr(self, name).shape)}")
            getattr(self, name).copy_(state[name])
        if self.track_best:
            self.best_loss.copy_(state["best_loss"])
            self.best_bits.copy_(state["best_bits"].bool())
