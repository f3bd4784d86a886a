"""Binary latents: logits -> bits with a straight-through estimator, and the packed bit layout.

A latent is a grid of bits, ``C`` bits per cell on an ``h x w`` grid. Three forms exist:

* **logits**  float ``(n, C, h, w)``, what the optimiser updates;
* **signs**   float ``(n, C, h, w)`` in {-1, +1}, what the decoder reads (bit 1 <-> +1, bit 0 <-> -1);
* **bits**    uint8 ``(n, C, h, w)`` in {0, 1}, and **packed** uint8 ``(n, ceil(C*h*w/8))``,
  what is stored once a stage ends (never float logits).

Packed layout (``LatentSpec.layout == "CHW"``, ``bit_order == "big"``): each latent is flattened
in C order over ``(C, h, w)`` (channel slowest, column fastest), then ``numpy.packbits`` with
``bitorder="big"``: flattened bit ``k`` is bit ``7 - k % 8`` (the most significant bit first) of
byte ``k // 8``. The last byte is padded with zeros when ``C*h*w`` is not a multiple of 8.

A logit ``l`` gives bit 1 when ``l >= 0`` (so a zero logit is +1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from bitlatent.config import ConfigGroup

__all__ = [
    "LatentSpec",
    "binarize",
    "hard_signs",
    "soft_signs",
    "logits_to_bits",
    "bits_to_signs",
    "pack_bits",
    "unpack_bits",
    "hardness_at",
]

_LAYOUTS = ("CHW",)
_BIT_ORDERS = ("big", "little")


# ----------------------------------------------------------------------------- latent spec


@dataclass(frozen=True)
class LatentSpec(ConfigGroup):
    """Shape and bit layout of one binary latent (the ``latent spec`` artifact, as JSON)."""

    h: int = 16
    """Latent grid height in cells."""
    w: int = 16
    """Latent grid width in cells."""
    bits_per_cell: int = 8
    """``C``: bits stored in each cell (the decoder's input channels)."""
    image_size: int = 64
    """Side of the (square) image the latent decodes to, in pixels."""
    bit_order: str = "big"
    """``numpy.packbits`` bit order inside a byte: "big" = first bit in the most significant bit."""
    layout: str = "CHW"
    """Order in which ``(C, h, w)`` is flattened before packing; only "CHW" (C order) is defined."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("h", "w", "bits_per_cell", "image_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"LatentSpec.{name} must be a positive int, got {value!r}")
        if self.bit_order not in _BIT_ORDERS:
            raise ValueError(f"LatentSpec.bit_order must be one of {_BIT_ORDERS}, got {self.bit_order!r}")
        if self.layout not in _LAYOUTS:
            raise ValueError(f"LatentSpec.layout must be one of {_LAYOUTS}, got {self.layout!r}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of one latent."""
        return (self.bits_per_cell, self.h, self.w)

    @property
    def bits_per_image(self) -> int:
        return self.bits_per_cell * self.h * self.w

    @property
    def bytes_per_image(self) -> int:
        """Bytes of one packed latent: ``ceil(bits_per_image / 8)``."""
        return math.ceil(self.bits_per_image / 8)

    @property
    def bits_per_pixel(self) -> float:
        return self.bits_per_image / float(self.image_size * self.image_size)


# ----------------------------------------------------------------------------- binarisation


def soft_signs(logits: torch.Tensor) -> torch.Tensor:
    """The relaxation of the signs: ``clamp(logits, -1, 1)`` (hardtanh), in [-1, 1]."""
    return logits.clamp(-1.0, 1.0)


def hard_signs(logits: torch.Tensor) -> torch.Tensor:
    """Exact ±1 signs, +1 where ``logits >= 0``. No gradient."""
    one = torch.ones((), dtype=logits.dtype, device=logits.device)
    return torch.where(logits >= 0, one, -one)


def binarize(logits: torch.Tensor, hardness: float = 1.0) -> torch.Tensor:
    """Logits -> decoder input, with a straight-through estimator.

    forward:  ``soft + hardness * (hard - soft)``; exactly the ±1 signs when ``hardness >= 1``.
    backward: the gradient of the relaxation ``soft_signs`` (identity where ``|logits| <= 1``,
              zero outside), whatever the hardness.

    ``hardness`` goes from 0 (the relaxation) to 1 (hard bits) over pretraining's annealing
    schedule (``hardness_at``). Shapes are preserved: (B, C, h, w) -> (B, C, h, w).
    """
    soft = soft_signs(logits)
    hard = hard_signs(logits.detach())
    surrogate = soft - soft.detach()  # exactly 0 in the forward pass, carries d soft / d logits
    if hardness >= 1.0:
        return hard + surrogate
    if hardness <= 0.0:
        return soft
    return torch.lerp(soft.detach(), hard, float(hardness)) + surrogate


def hardness_at(progress: float, hard_from: float = 0.0) -> float:
    """Annealing schedule: hardness rises linearly from 0 at the start to 1 at ``hard_from``.

    ``progress`` is the fraction of the run done, in [0, 1]. ``hard_from <= 0`` means hard bits
    (plain straight-through) from the start.
    """
    if hard_from <= 0.0 or progress >= hard_from:
        return 1.0
    if progress <= 0.0:
        return 0.0
    return progress / max(hard_from, 1e-12)


# ----------------------------------------------------------------------------- bits <-> signs


def logits_to_bits(logits: torch.Tensor | np.ndarray) -> np.ndarray:
    """Logits (n, C, h, w) -> uint8 bits in {0, 1} (1 where logit >= 0), as numpy."""
    if isinstance(logits, torch.Tensor):
        logits = logits.detach().cpu().numpy()
    return (np.asarray(logits) >= 0).astype(np.uint8)


def bits_to_signs(bits: np.ndarray | torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Bits {0, 1} (n, C, h, w) -> float signs {-1, +1} (n, C, h, w)."""
    t = torch.as_tensor(np.asarray(bits) if not isinstance(bits, torch.Tensor) else bits)
    return t.to(dtype) * 2 - 1


# ----------------------------------------------------------------------------- packing


def _as_bit_array(bits: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(bits, torch.Tensor):
        bits = bits.detach().cpu().numpy()
    bits = np.asarray(bits)
    if bits.dtype == np.bool_:
        return bits.astype(np.uint8)
    if bits.dtype != np.uint8:
        raise TypeError(f"bits must be uint8 or bool, got {bits.dtype}")
    if bits.size and bits.max() > 1:
        raise ValueError("bits must be 0 or 1")
    return bits


def pack_bits(bits: np.ndarray | torch.Tensor, bit_order: str = "big") -> np.ndarray:
    """Bits uint8/bool (n, C, h, w) -> packed uint8 (n, ceil(C*h*w/8)).

    Flattens each latent in C order over (C, h, w), then ``numpy.packbits(..., bitorder)``.
    """
    bits = _as_bit_array(bits)
    if bits.ndim != 4:
        raise ValueError(f"bits must be (n, C, h, w), got shape {bits.shape}")
    flat = bits.reshape(bits.shape[0], -1)  # (n, C*h*w), C order
    return np.packbits(flat, axis=1, bitorder=bit_order)


def unpack_bits(packed: np.ndarray, spec: LatentSpec) -> np.ndarray:
    """Packed uint8 (n, ceil(C*h*w/8)) -> bits uint8 (n, C, h, w), the inverse of ``pack_bits``."""
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != spec.bytes_per_image:
        raise ValueError(
            f"packed latents must be uint8 (n, {spec.bytes_per_image}), got {packed.dtype} {packed.shape}"
        )
    flat = np.unpackbits(packed, axis=1, count=spec.bits_per_image, bitorder=spec.bit_order)
    return flat.reshape(packed.shape[0], *spec.shape)
