"""What a set of latents costs as streams, timed and checked: the figures the compression pipeline reports."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from .coder import BitLogits, compress_batch, decompress_batch
from .header import HEADER_BYTES

__all__ = ["StreamCost", "stream_cost"]

_FRAMING_BITS = 8 * HEADER_BYTES  # the header (the payload runs to the stream's end)


@dataclass(frozen=True)
class StreamCost:
    """Mean over the latents coded (one batch)."""

    bits_per_image: float  # whole streams, header included
    payload_bits_per_image: float  # the range coder's words alone
    compress_ms_per_image: float  # wall time of compress_batch / n (model calls included)
    decompress_ms_per_image: float  # wall time of decompress_batch / n

    def to_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


def stream_cost(bits: np.ndarray, logits_fn: BitLogits, stages: int, model_id: str) -> StreamCost:
    """Compress ``bits`` uint8 (n, C, h, w) in one batch, decompress the streams in one batch, and
    check that every latent comes back exactly (``RuntimeError`` otherwise: a codec that loses bits
    must not report a size)."""
    n = len(bits)
    start = time.perf_counter()
    streams = compress_batch(bits, logits_fn, stages, model_id)
    compressed = time.perf_counter()
    decoded = decompress_batch(streams, logits_fn, model_id)
    decompressed = time.perf_counter()
    wrong = int((decoded != bits).reshape(n, -1).any(axis=1).sum())
    if wrong:
        raise RuntimeError(f"{wrong} of {n} latents did not come back exactly from their streams")
    sizes = np.array([8 * len(s) for s in streams], dtype=np.float64)
    return StreamCost(float(sizes.mean()), float(sizes.mean() - _FRAMING_BITS),
                      1000 * (compressed - start) / n, 1000 * (decompressed - compressed) / n)  # fmt: skip
