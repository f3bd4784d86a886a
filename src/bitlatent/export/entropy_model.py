"""torch -> ONNX for the entropy model (``codec.entropy_model``), and its parity check.

    entropy_model.onnx  the graph ``codec.logits`` documents and runs (``onnx_logits``): per-bit logits
                        of a latent given its known bits and a caption's MiniLM states, or none

Parity: on random latents with random known sets (every fraction from none to nearly all), with and
without random captions (some padded), at batch 1 and ``batch``: max |logit difference| <= ``tolerance``,
and a round trip of streams coded with the graph (``codec.compress_batch`` / ``decompress_batch``
through ``onnx_logits``) gives the latents back exactly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from bitlatent.codec import compress_batch, decompress_batch
from bitlatent.codec.entropy_model import EntropyModel
from bitlatent.codec.logits import ENTROPY_INPUTS, ENTROPY_OUTPUTS, onnx_logits, onnx_model_id

from .onnx_export import _export
from .parity import ParityError, ParityResult, _session

__all__ = ["EntropyModelForExport", "entropy_model_parity", "export_entropy_model"]


class EntropyModelForExport(nn.Module):
    """``EntropyModel.forward`` with ONNX-friendly inputs: bits uint8, known bool (B, C, h, w),
    caption_states float32 (B, L, D), caption_mask int64 (B, L), uncaptioned bool (B,) -> logits (B, C, h, w)."""

    def __init__(self, model: EntropyModel):
        super().__init__()
        self.model = model

    def forward(self, bits: torch.Tensor, known: torch.Tensor, caption_states: torch.Tensor,
                caption_mask: torch.Tensor, uncaptioned: torch.Tensor) -> torch.Tensor:  # fmt: skip
        return self.model(bits, known, caption_states, caption_mask.bool(), uncaptioned)


def export_entropy_model(model: EntropyModel, path: str | Path, opset: int = 18) -> Path:
    """Write ``entropy_model.onnx`` (dynamic batch and caption length)."""
    path = Path(path)
    cfg = model.config
    shape = (2, *cfg.latent_shape)  # batch 2: no 0/1 specialisation
    example = (torch.randint(0, 2, shape, dtype=torch.uint8), torch.rand(shape) < 0.5,
               torch.randn(2, 5, cfg.text_dim), torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]),
               torch.tensor([False, True]))  # fmt: skip
    batch = torch.export.Dim("batch", min=1, max=65536)
    sequence = torch.export.Dim("sequence", min=1, max=512)
    shapes = {"bits": {0: batch}, "known": {0: batch}, "caption_states": {0: batch, 1: sequence},
              "caption_mask": {0: batch, 1: sequence}, "uncaptioned": {0: batch}}  # fmt: skip
    _export(EntropyModelForExport(model).eval(), example, path, ENTROPY_INPUTS, ENTROPY_OUTPUTS, shapes, opset)
    return path


def entropy_model_parity(model: EntropyModel, path: Path, batch: int, rng: np.random.Generator, tolerance: float,
                         name: str = "entropy_model") -> ParityResult:  # fmt: skip
    """The graph at ``path`` (exported from ``model``) against ``model``; see the module docstring."""
    session = _session(path)
    wrapper = EntropyModelForExport(model).eval()
    cfg = model.config
    worst, total = 0.0, 0
    for b in (1, batch):
        length = int(rng.integers(1, 12))
        bits = rng.integers(0, 2, size=(b, *cfg.latent_shape), dtype=np.uint8)
        known = rng.random(bits.shape) < rng.random((b, 1, 1, 1))  # each row its own known fraction
        states = rng.standard_normal((b, length, cfg.text_dim)).astype(np.float32)
        mask = np.ones((b, length), dtype=np.int64)
        mask[1:, (length + 1) // 2:] = 0  # padded captions after the first
        uncaptioned = np.arange(b) % 2 == 1  # every other row without its caption
        feeds = dict(zip(ENTROPY_INPUTS, (bits, known, states, mask, uncaptioned)))
        (logits,) = session.run(ENTROPY_OUTPUTS, feeds)
        with torch.no_grad():
            ref = wrapper(*(torch.from_numpy(a) for a in feeds.values())).numpy()
        if logits.shape != ref.shape:
            raise ParityError(f"{name}: ONNX shape {logits.shape}, torch {ref.shape}")
        worst = max(worst, float(np.abs(logits - ref).max()))
        total += b
    latents = rng.integers(0, 2, size=(max(batch, 2), *cfg.latent_shape), dtype=np.uint8)
    model_id = onnx_model_id(path)
    streams = compress_batch(latents, onnx_logits(session), 8, model_id)
    exact = bool((decompress_batch(streams, onnx_logits(session), model_id) == latents).all())
    passed = worst <= tolerance and exact
    message = (f"{name}: max |logit difference| = {worst:.3g} over {total} random latents "
               f"({'<=' if worst <= tolerance else '>'} {tolerance:g}); streams coded with the graph "
               f"{'decode exactly' if exact else 'do NOT decode exactly'}")  # fmt: skip
    return ParityResult(name, {"max_abs_logit": worst, "latents": total, "round_trip_exact": exact,
                               "tolerance": tolerance}, passed, message)  # fmt: skip
