"""Capacity accounting: information in the latents vs. bits in the decoder's weights.

Latents are bits, so the information they can carry is exact: ``bits_per_image * n_images``.
The decoder holds ``num_parameters * bits_per_parameter`` bits. When the decoder holds more
bits than all latents together (``ratio > 1``) it can memorise the training images instead of
learning a shared prior, and a ``CapacityWarning`` is issued (and logged).
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass

import torch

from .binary import LatentSpec

__all__ = ["CapacityReport", "CapacityWarning", "capacity_report"]

logger = logging.getLogger(__name__)


class CapacityWarning(UserWarning):
    """The decoder's weights hold more bits than the latents it is trained with."""


@dataclass(frozen=True)
class CapacityReport:
    bits_per_image: int
    """Latent bits per image, ``C * h * w``."""
    bits_per_pixel: float
    """Latent bits per image pixel."""
    n_images: int
    """Images whose latents the decoder is trained with."""
    total_latent_bits: int
    """``bits_per_image * n_images``."""
    decoder_parameters: int
    """Number of decoder parameters."""
    bits_per_parameter: int
    """Storage bits per parameter (32 for float32, 16 for bf16/fp16)."""
    decoder_bits: int
    """``decoder_parameters * bits_per_parameter``."""
    ratio: float
    """``decoder_bits / total_latent_bits``; above ``max_ratio`` the decoder can memorise."""
    max_ratio: float
    """Threshold of the warning."""

    @property
    def exceeds(self) -> bool:
        return self.ratio > self.max_ratio

    def to_dict(self) -> dict:
        return {**asdict(self), "exceeds": self.exceeds}


def capacity_report(
    spec: LatentSpec,
    n_images: int,
    decoder: torch.nn.Module | int,
    bits_per_parameter: int | None = None,
    max_ratio: float = 1.0,
    warn: bool = True,
) -> CapacityReport:
    """Compare decoder bits with latent bits. ``decoder`` is a module or a parameter count;
    ``bits_per_parameter`` defaults to the module's parameter dtype (32 for a count)."""
    if isinstance(decoder, torch.nn.Module):
        params = list(decoder.parameters())
        n_params = sum(p.numel() for p in params)
        if bits_per_parameter is None:
            bits_per_parameter = params[0].element_size() * 8 if params else 32
    else:
        n_params = int(decoder)
        bits_per_parameter = 32 if bits_per_parameter is None else bits_per_parameter
    total = spec.bits_per_image * int(n_images)
    decoder_bits = n_params * int(bits_per_parameter)
    report = CapacityReport(
        bits_per_image=spec.bits_per_image,
        bits_per_pixel=spec.bits_per_pixel,
        n_images=int(n_images),
        total_latent_bits=total,
        decoder_parameters=n_params,
        bits_per_parameter=int(bits_per_parameter),
        decoder_bits=decoder_bits,
        ratio=decoder_bits / total if total else float("inf"),
        max_ratio=max_ratio,
    )
    if warn and report.exceeds:
        msg = (
            f"decoder capacity ({decoder_bits:,} bits = {n_params:,} params x {bits_per_parameter}) exceeds "
            f"the information in the latents ({total:,} bits = {n_images:,} images x {spec.bits_per_image}); "
            f"ratio {report.ratio:.2f} > {max_ratio:g}: the decoder can memorise its training images"
        )
        logger.warning(msg)
        warnings.warn(msg, CapacityWarning, stacklevel=2)
    return report
