"""The coding order: which stage each bit of a latent is coded in.

Bits of stage ``s`` are coded given every bit of stages ``< s`` (stage 0 with nothing known), with one
call of the probability model per stage. The pattern is fixed by the latent shape and the number of
stages alone, so the decoder rebuilds it from the stream's header.

Why this pattern:

* **Order: a fixed pseudo-random permutation of all ``C * h * w`` bits.** The prior is a masked,
  bit-level model trained on random masks, so a random order of bits shows it the kind of
  "some bits known" context it was trained on, and each stage's bits are spread over every cell
  and channel (no stage is a block of neighbours that could not inform one another). The
  permutation is the argsort of a splitmix64 hash of each flat raster index (``(c * h + y) * w + x``)
  in integer arithmetic, not a numpy RNG, whose shuffling algorithm is not promised to stay the same
  across numpy versions: the order is part of the stream format (``header.FORMAT_VERSION``).
* **Sizes: a cosine (MaskGIT) schedule.** After stage ``t`` (of ``S``) a fraction
  ``cos(pi / 2 * (t + 1) / S)`` of the bits is still unknown, so the first stages are small (with
  little known each bit costs close to its marginal entropy) and the last ones, coded with most of
  the latent known, are large. Every stage holds at least one bit. The float cosine is floored to an
  integer count; a libm that differed in the last ulp at an exact integer boundary would move one bit
  between stages, which the latent checksum in the header would catch rather than decode wrongly.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DEFAULT_STAGES", "coding_stages", "stage_sizes"]

# The number of stages (model calls per latent) when a caller does not choose.
DEFAULT_STAGES = 8

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_SEED = np.uint64(0x62_69_74_6C_61_74_65_6E)  # b"bitlaten": fixes the permutation for format version 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's output function of uint64 ``x`` (wrapping arithmetic), elementwise."""
    z = x * _GOLDEN + _SEED
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def stage_sizes(num_bits: int, stages: int) -> np.ndarray:
    """int64 (stages,): how many bits each stage codes, a cosine schedule summing to ``num_bits``."""
    if not 1 <= stages <= num_bits:
        raise ValueError(f"stages must be in [1, {num_bits}] for a latent of {num_bits} bits, got {stages}")
    done = [0]  # bits coded after each stage
    for t in range(1, stages + 1):
        left = math.floor(num_bits * math.cos(math.pi / 2 * t / stages)) if t < stages else 0
        done.append(min(max(num_bits - left, done[-1] + 1), num_bits - (stages - t)))
    return np.diff(np.asarray(done, dtype=np.int64))


def coding_stages(latent_shape: tuple[int, int, int], stages: int = DEFAULT_STAGES) -> np.ndarray:
    """int64 (C, h, w): the stage (0 .. stages-1) in which each bit of a ``latent_shape`` latent is coded.

    Stage 0 is coded with nothing known; bits of stage ``s`` given all bits of stages ``< s``.
    """
    if len(latent_shape) != 3 or min(latent_shape) < 1:
        raise ValueError(f"latent_shape must be (C, h, w) of positive ints, got {latent_shape}")
    num_bits = math.prod(latent_shape)
    sizes = stage_sizes(num_bits, stages)
    order = np.argsort(_splitmix64(np.arange(num_bits, dtype=np.uint64)), kind="stable")  # rank -> flat index
    stage_of_rank = np.repeat(np.arange(stages, dtype=np.int64), sizes)  # (num_bits,)
    stage = np.empty(num_bits, dtype=np.int64)
    stage[order] = stage_of_rank
    return stage.reshape(latent_shape)
