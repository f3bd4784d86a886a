"""bitlatent.codec.measure: stream sizes and times, and a loud failure when streams do not decode exactly."""

from __future__ import annotations

import numpy as np
import pytest

from bitlatent.codec import HEADER_BYTES, CodecError, compress_batch
from bitlatent.codec.measure import stream_cost

MODEL = "000000ab"


def uninformed(bits: np.ndarray, known: np.ndarray) -> np.ndarray:
    return np.zeros(bits.shape, np.float32)


def test_sizes_are_the_mean_stream_and_payload_bits():
    bits = np.random.default_rng(0).integers(0, 2, (5, 4, 4, 4), dtype=np.uint8)
    cost = stream_cost(bits, uninformed, 4, MODEL)
    sizes = [8 * len(s) for s in compress_batch(bits, uninformed, 4, MODEL)]
    assert cost.bits_per_image == np.mean(sizes)
    assert cost.payload_bits_per_image == np.mean(sizes) - 8 * HEADER_BYTES == 64 + 32  # 1 bit a bit, last word
    assert cost.compress_ms_per_image > 0 and cost.decompress_ms_per_image > 0
    assert set(cost.to_dict()) == {"bits_per_image", "payload_bits_per_image", "compress_ms_per_image",
                                   "decompress_ms_per_image"}


def test_a_model_that_answers_differently_when_decoding_fails_loudly():
    calls = iter(range(10**6))

    def drifting(bits: np.ndarray, known: np.ndarray) -> np.ndarray:  # other logits on every call
        return np.full(bits.shape, 3.0 * np.sin(next(calls)), np.float32)

    bits = np.random.default_rng(1).integers(0, 2, (4, 4, 4, 4), dtype=np.uint8)
    with pytest.raises(CodecError, match="checksum|range decoder"):
        stream_cost(bits, drifting, 4, MODEL)
