"""Latent bits from text-model outputs, in numpy: the three modes of ``bitlatent.text.generate``.

* **generate**: argmax bits (``temperature == 0``) or ``Bernoulli(sigmoid(logit / T))`` samples;
* **retrieve**: the library latents nearest to the prompt's K-bit text code (Hamming distance,
  ties to the lower index);
* **refine**: a retrieved latent moved toward the predicted bits: of the bits where they
  disagree, the most confident fraction ``strength`` (by ``|logit|``) is flipped (bundles with a
  cell prior refine with it instead: ``prior.py``).

Same semantics as the torch path, rows prompt-major. Sampling uses numpy's generator seeded
by ``(seed, sample number)`` (torch's generator is not available here), so sampled bits are
reproducible for a seed but not bit-identical to the torch path's; argmax, retrieve and
refine at temperature 0 are identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["MODES", "LatentLibrary", "default_temperature", "sample_bits", "refine_bits", "hamming_distances", "nearest"]

MODES = ("generate", "retrieve", "refine")


def default_temperature(mode: str, has_prior: bool) -> float:
    """1 for generate and refine from a cell prior (its most likely cell is background: greedy
    draws are empty pictures), 0 (the most likely bits) otherwise. The torch and ONNX paths share it."""
    return 1.0 if mode in ("generate", "refine") and has_prior else 0.0


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def sample_bits(bit_logits: np.ndarray, temperature: float = 0.0, seed: int = 0, samples: int = 1) -> np.ndarray:
    """Bit logits (n, C, h, w) -> bits uint8 (n, samples, C, h, w).

    Sample j's uniform noise (C, h, w) comes from ``numpy.random.default_rng([seed, j])`` and is
    shared by the prompts, so a prompt's samples do not depend on the other prompts of the call.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    logits = np.asarray(bit_logits, dtype=np.float32)
    if temperature == 0:
        return np.repeat((logits >= 0).astype(np.uint8)[:, None], samples, axis=1)
    p = _sigmoid(logits / np.float32(temperature))  # (n, C, h, w)
    out = np.empty((len(logits), samples, *logits.shape[1:]), dtype=np.uint8)
    for j in range(samples):
        u = np.random.default_rng([int(seed) & 0xFFFFFFFF, j]).random(logits.shape[1:], dtype=np.float32)
        out[:, j] = u[None] < p
    return out


def refine_bits(start_bits: np.ndarray, bit_logits: np.ndarray, strength: float = 0.5,
                target_bits: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Move ``start_bits`` (n, C, h, w) toward ``target_bits`` (default: argmax of the logits):
    flip the ``round(strength * disagreements)`` disagreeing bits with the largest ``|logit|``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    start = np.asarray(start_bits).astype(bool)
    logits = np.asarray(bit_logits, dtype=np.float32)
    target = (logits >= 0) if target_bits is None else np.asarray(target_bits).astype(bool)
    if not start.shape == logits.shape == target.shape:
        raise ValueError(f"shapes differ: start {start.shape}, logits {logits.shape}, target {target.shape}")
    n = len(start)
    disagree = (start != target).reshape(n, -1)  # (n, bits)
    confidence = np.where(disagree, np.abs(logits).reshape(n, -1), -1.0)
    order = np.argsort(-confidence, axis=1, kind="stable")  # most confident disagreement first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(n, 0), axis=1)
    n_flip = np.round(strength * disagree.sum(1)).astype(np.int64)  # (n,)
    flip = disagree & (rank < n_flip[:, None])
    return (start.reshape(n, -1) ^ flip).reshape(start.shape).astype(np.uint8)


def _signs(bits: np.ndarray) -> np.ndarray:
    return np.asarray(bits, dtype=np.float32).reshape(len(bits), -1) * 2 - 1


def hamming_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bits (n, K) x (m, K) -> int32 (n, m), via a float32 matmul of signs (exact for K < 2**24)."""
    sa, sb = _signs(a), _signs(b)
    if sa.shape[1] != sb.shape[1]:
        raise ValueError(f"codes differ in length: {sa.shape[1]} vs {sb.shape[1]}")
    return np.rint((sa.shape[1] - sa @ sb.T) / 2).astype(np.int32)


def nearest(code_bits: np.ndarray, library_signs: np.ndarray, k: int = 1) -> np.ndarray:
    """Text codes (n, K) bits x library code signs (M, K) -> int64 (n, k), nearest first."""
    if not 1 <= k <= len(library_signs):
        raise ValueError(f"k must be in 1..{len(library_signs)} (the library size), got {k}")
    K = library_signs.shape[1]
    d = np.rint((K - _signs(code_bits) @ library_signs.T) / 2)  # (n, M)
    return np.argsort(d, axis=1, kind="stable")[:, :k].astype(np.int64)


@dataclass
class LatentLibrary:
    """Image latents to search: packed bits (M, bytes), image codes as signs (M, K), ids (M,)."""

    packed: np.ndarray
    code_signs: np.ndarray
    image_ids: np.ndarray
    bits_per_image: int
    shape: tuple[int, int, int]
    bit_order: str = "big"

    @classmethod
    def load(cls, path: str | Path, shape: tuple[int, int, int], bit_order: str = "big") -> "LatentLibrary":
        with np.load(path, allow_pickle=False) as data:
            packed, codes, ids = data["bits"], data["codes"], data["image_ids"]
            code_bits = int(data["code_bits"])
        codes = np.unpackbits(codes, axis=1, count=code_bits, bitorder="big")  # (M, K)
        bits = int(np.prod(shape))
        if packed.ndim != 2 or packed.shape[1] != (bits + 7) // 8 or len(packed) != len(codes):
            raise ValueError(f"{path}: latents {packed.shape} / codes {codes.shape} do not fit latents of shape {shape}")
        return cls(packed, codes.astype(np.float32) * 2 - 1, ids, bits, tuple(shape), bit_order)

    def __len__(self) -> int:
        return len(self.packed)

    def bits(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), C, h, w) latents of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        flat = np.unpackbits(self.packed[rows], axis=1, count=self.bits_per_image, bitorder=self.bit_order)
        return flat.reshape(len(rows), *self.shape)
