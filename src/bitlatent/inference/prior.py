"""Draw latents from the exported cell prior (``prior.onnx``), cell by cell, with numpy. No torch.

    prior_tokens (N, L, d), attention_mask (N, L)        from text_to_latent.onnx
      -> for t = 0 .. T-1:  prior.onnx(tokens, mask, cells[:, :t+1]) -> cell_logits[:, t]  (N*S, 2^C)
                            value_t ~ softmax(logits / temperature)      (argmax at temperature 0)
                            cells[:, t] = the C bits of value_t          (bit 0 most significant)
      -> bits uint8 (N * S, C, h, w), prompt-major

Position t of ``cell_logits`` reads cells < t only, so the row at t is cell t's distribution
whatever sits at t (a zero placeholder here). Each step recomputes the prefix: T(T+1)/2 cell
positions in all, fine at the grids this project trains (8 x 8 cells by default).

Seeds follow ``latents.sample_bits``: sample j draws its T uniforms from
``numpy.random.default_rng([seed, j])``, shared by the prompts of a call, so a prompt's samples do
not depend on the other prompts. The torch path (``CellPrior.sample``) draws with torch's
generator: the same distribution, not the same draws; at temperature 0 both take the argmax.
"""

from __future__ import annotations

import numpy as np

__all__ = ["sample_prior_cells", "cell_bits"]


def cell_bits(values: np.ndarray, c: int) -> np.ndarray:
    """Cell values (...,) in [0, 2^C) -> their bits (..., C) uint8, bit 0 the most significant."""
    shifts = np.arange(c - 1, -1, -1)
    return ((np.asarray(values)[..., None] >> shifts) & 1).astype(np.uint8)


def _draw(logits: np.ndarray, temperature: float, uniforms: np.ndarray) -> np.ndarray:
    """Logits (n, V) -> values (n,): argmax at temperature 0, else inverse-CDF draws with ``uniforms`` (n,)."""
    if temperature == 0:
        return logits.argmax(1)
    z = logits.astype(np.float64) / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    cdf = np.cumsum(p, 1)
    cdf /= cdf[:, -1:]
    return np.minimum((cdf < uniforms[:, None]).sum(1), logits.shape[1] - 1)


def sample_prior_cells(session, prior_tokens: np.ndarray, attention_mask: np.ndarray,
                       latent_shape: tuple[int, int, int], temperature: float = 1.0, seed: int = 0,
                       samples: int = 1) -> np.ndarray:  # fmt: skip
    """Latents drawn from ``session`` (an ONNX Runtime session of ``prior.onnx``) for N captions ->
    bits uint8 (N * samples, C, h, w), prompt-major."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    c, h, w = latent_shape
    n, steps = len(prior_tokens), h * w
    tokens = np.repeat(np.ascontiguousarray(prior_tokens, dtype=np.float32), samples, axis=0)  # (N*S, L, d)
    mask = np.repeat(np.ascontiguousarray(attention_mask, dtype=np.int64), samples, axis=0)  # (N*S, L)
    uniforms = np.stack([np.random.default_rng([int(seed) & 0xFFFFFFFF, j]).random(steps) for j in range(samples)])
    uniforms = np.tile(uniforms, (n, 1))  # (N*S, T): row i is sample i % S
    cells = np.zeros((n * samples, steps, c), dtype=np.uint8)
    for t in range(steps):
        (logits,) = session.run(["cell_logits"], {"prior_tokens": tokens, "attention_mask": mask,
                                                  "cells": cells[:, : t + 1]})  # fmt: skip
        cells[:, t] = cell_bits(_draw(logits[:, t], temperature, uniforms[:, t]), c)
    return np.ascontiguousarray(cells.transpose(0, 2, 1).reshape(n * samples, c, h, w))
