"""bitlatent.codec.coder: bit-exact round trips, stream sizes near the model's cross-entropy, refusals.

The probability models here are toy numpy functions of the known bits (the codec takes any callable):
``neighbour_logits`` reads the known neighbours of each bit, ``confident_logits`` predicts a fixed
pattern with near-certainty, so the latents that break the pattern exercise very unlikely bits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bitlatent.codec.coder import (
    PROBABILITY_BITS,
    Codec,
    compress,
    compress_batch,
    decompress,
    decompress_batch,
    ideal_bits,
    quantised_probabilities,
)
from bitlatent.codec.errors import CodecError
from bitlatent.codec.header import HEADER_BYTES, pack_stream, read_header, unpack_stream

MODEL = "5eedc0de"
OTHER_MODEL = "5eedbeef"
SHAPES = [(8, 8, 8), (8, 16, 16), (16, 8, 8), (4, 16, 16)]


def neighbour_logits(bits: np.ndarray, known: np.ndarray) -> np.ndarray:
    """float32 (n, C, h, w): a bit leans to its known 4 neighbours (same channel) and known cell-mates."""
    signed = np.where(known, 2.0 * bits - 1.0, 0.0)  # +-1 known, 0 unknown
    spatial = sum(np.roll(signed, shift, axis) for shift in (1, -1) for axis in (2, 3))
    cell = signed.sum(axis=1, keepdims=True) - signed
    return (1.2 * spatial + 0.4 * cell - 0.3).astype(np.float32)


def _pattern(shape: tuple[int, ...]) -> np.ndarray:
    """uint8 (C, h, w): the latent ``confident_logits`` expects."""
    c, y, x = np.indices(shape)
    return ((c + y * x) % 3 == 0).astype(np.uint8)


def confident_logits(bits: np.ndarray, known: np.ndarray, confidence: float = 9.0) -> np.ndarray:
    """float32 (n, C, h, w): +-confidence towards ``_pattern``, whatever is known."""
    pattern = _pattern(bits.shape[1:])
    return np.broadcast_to(np.where(pattern == 1, confidence, -confidence), bits.shape).astype(np.float32)


def smooth_latents(rng: np.random.Generator, n: int, shape: tuple[int, int, int]) -> np.ndarray:
    """uint8 (n, C, h, w): blobs (box-blurred noise, thresholded), the kind neighbour_logits predicts."""
    field = rng.normal(size=(n, *shape))
    for _ in range(3):
        field = sum(np.roll(field, s, a) for s in (1, 0, -1) for a in (2, 3)) / 6
    return (field > 0).astype(np.uint8)


def broken_pattern(rng: np.random.Generator, shape: tuple[int, int, int], wrong: int) -> np.ndarray:
    """uint8 (C, h, w): ``_pattern`` with ``wrong`` bits flipped."""
    bits = _pattern(shape).reshape(-1)
    bits[rng.choice(bits.size, wrong, replace=False)] ^= 1
    return bits.reshape(shape)


def payload_bytes(data: bytes) -> int:
    return len(unpack_stream(data)[1])


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("model", [neighbour_logits, confident_logits])
def test_round_trip_is_bit_exact(shape, model):
    rng = np.random.default_rng(math.prod(shape))
    latents = np.concatenate([smooth_latents(rng, 2, shape), broken_pattern(rng, shape, 7)[None],
                              rng.integers(0, 2, (1, *shape), dtype=np.uint8)])
    for bits in latents:
        data = compress(bits, model, 8, MODEL)
        decoded = decompress(data, model, MODEL, shape)
        assert decoded.dtype == np.uint8 and decoded.shape == shape
        np.testing.assert_array_equal(decoded, bits)


@pytest.mark.parametrize("shape", SHAPES)
def test_a_batch_round_trips_and_equals_the_single_streams(shape):
    latents = smooth_latents(np.random.default_rng(1), 5, shape)
    streams = compress_batch(latents, neighbour_logits, 6, MODEL)
    assert streams == [compress(bits, neighbour_logits, 6, MODEL) for bits in latents]
    np.testing.assert_array_equal(decompress_batch(streams, neighbour_logits, MODEL), latents)


def test_the_output_is_deterministic():
    latents = smooth_latents(np.random.default_rng(2), 3, (8, 16, 16))
    first = compress_batch(latents, neighbour_logits, 8, MODEL)
    assert compress_batch(latents.copy(), neighbour_logits, 8, MODEL) == first


def test_the_model_is_called_once_a_stage_with_only_the_known_bits():
    calls = []

    def recording(bits, known):
        assert bits.shape == known.shape == (5, 8, 8, 8) and bits.dtype == np.uint8 and known.dtype == bool
        assert not bits[~known].any(), "unknown bits must reach the model as 0"
        calls.append(int(known.sum()))
        return neighbour_logits(bits, known)

    latents = smooth_latents(np.random.default_rng(3), 5, (8, 8, 8))
    streams = compress_batch(latents, recording, 8, MODEL)
    encoding_calls, calls[:] = calls[:], []
    decompress_batch(streams, recording, MODEL)
    assert len(encoding_calls) == 8 and encoding_calls[0] == 0 and encoding_calls == calls
    assert np.all(np.diff(encoding_calls) > 0)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("model", [neighbour_logits, confident_logits])
def test_the_stream_is_within_a_word_of_the_cross_entropy(shape, model):
    rng = np.random.default_rng(4)
    for bits in [smooth_latents(rng, 1, shape)[0], broken_pattern(rng, shape, 5)]:
        data = compress(bits, model, 8, MODEL)
        ideal = ideal_bits(bits, model, 8) / 8
        assert len(data) == HEADER_BYTES + payload_bytes(data) and payload_bytes(data) % 4 == 0
        assert ideal - 1 <= payload_bytes(data) <= ideal + 5, (payload_bytes(data), ideal)


def test_ideal_bits_of_a_batch_is_per_latent():
    latents = smooth_latents(np.random.default_rng(5), 4, (8, 8, 8))
    batch = ideal_bits(latents, neighbour_logits, 8)
    assert batch.shape == (4,)
    np.testing.assert_allclose(batch, [ideal_bits(bits, neighbour_logits, 8) for bits in latents])


def test_a_skewed_model_compresses_well_below_raw_bits():
    rng = np.random.default_rng(6)
    bits = (rng.random((8, 16, 16)) < 0.05).astype(np.uint8)
    data = compress(bits, lambda b, k: np.full(b.shape, -3.0, np.float32), 8, MODEL)
    assert payload_bytes(data) < 0.4 * bits.size / 8
    assert len(data) < 0.5 * bits.size / 8


def test_an_uninformed_model_costs_one_bit_a_bit():
    bits = np.random.default_rng(7).integers(0, 2, (8, 16, 16), dtype=np.uint8)
    data = compress(bits, lambda b, k: np.zeros(b.shape, np.float32), 8, MODEL)
    assert bits.size / 8 <= payload_bytes(data) <= bits.size / 8 + 4


def test_an_impossible_bit_costs_at_most_the_clamp():
    # logits of +-1e4 saturate to the clamp: a wrong bit costs PROBABILITY_BITS bits, no more, and decodes
    rng, shape = np.random.default_rng(8), (8, 8, 8)
    certain = lambda b, k: confident_logits(b, k, confidence=1e4)  # noqa: E731
    bits = broken_pattern(rng, shape, 3)
    data = compress(bits, certain, 8, MODEL)
    np.testing.assert_array_equal(decompress(data, certain, MODEL), bits)
    assert ideal_bits(bits, certain, 8) == pytest.approx(3 * PROBABILITY_BITS, abs=0.05)
    assert payload_bytes(data) <= 3 * PROBABILITY_BITS / 8 + 4


def test_probabilities_are_on_the_grid_and_clamped():
    p = quantised_probabilities(np.array([-np.inf, -1e4, -2.0, 0.0, 3.0, 1e4, np.inf], np.float32))
    scale = 2.0**PROBABILITY_BITS
    assert p[0] == p[1] == 1 / scale and p[-1] == p[-2] == 1 - 1 / scale and p[3] == 0.5
    assert np.all(p * scale == np.rint(p * scale))
    assert abs(p[2] - 1 / (1 + math.exp(2.0))) <= 0.5 / scale


@settings(max_examples=12, deadline=None)
@given(shape=st.sampled_from([(1, 1, 1), (2, 3, 5), *SHAPES]), stages=st.integers(1, 10), seed=st.integers(0, 2**32 - 1))
def test_random_bits_round_trip(shape, stages, seed):
    bits = np.random.default_rng(seed).integers(0, 2, shape, dtype=np.uint8)
    stages = min(stages, bits.size)
    for model in (neighbour_logits, confident_logits):
        np.testing.assert_array_equal(decompress(compress(bits, model, stages, MODEL), model, MODEL), bits)


# --- refusals ---------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def stream() -> bytes:
    return compress(smooth_latents(np.random.default_rng(9), 1, (8, 16, 16))[0], neighbour_logits, 8, MODEL)


def test_a_stream_of_another_model_is_refused(stream):
    with pytest.raises(CodecError, match=f"encoded for model {MODEL}, this decoder has model {OTHER_MODEL}"):
        decompress(stream, neighbour_logits, OTHER_MODEL)


def test_a_stream_of_another_shape_is_refused(stream):
    with pytest.raises(CodecError, match=r"shape \(8, 16, 16\), expected \(8, 8, 8\)"):
        decompress(stream, neighbour_logits, MODEL, (8, 8, 8))
    with pytest.raises(CodecError, match="shape"):
        Codec(neighbour_logits, (16, 8, 8), MODEL).decompress(stream)


def test_a_batch_of_mixed_shapes_is_refused(stream):
    small = compress(np.zeros((8, 8, 8), np.uint8), neighbour_logits, 8, MODEL)
    with pytest.raises(CodecError, match="decode them apart"):
        decompress_batch([stream, small], neighbour_logits, MODEL)


@pytest.mark.parametrize("keep", [0, 10, HEADER_BYTES, HEADER_BYTES + 3, -1, -4])
def test_a_truncated_stream_is_refused(stream, keep):
    with pytest.raises(CodecError, match="truncated"):
        decompress(stream[:keep], neighbour_logits, MODEL)


@pytest.mark.parametrize("offset", [6, 12, 14, HEADER_BYTES, HEADER_BYTES + 17, -5, -1])  # stages, latent CRC, payload
def test_a_corrupted_byte_is_refused(stream, offset):
    data = bytearray(stream)
    data[offset] ^= 0x10
    with pytest.raises(CodecError, match="corrupted|truncated|trailing"):
        decompress(bytes(data), neighbour_logits, MODEL)


def test_a_bad_stream_in_a_batch_is_named(stream):
    with pytest.raises(CodecError, match="stream 1: truncated"):
        decompress_batch([stream, stream[:-3]], neighbour_logits, MODEL)


def test_trailing_words_are_refused(stream):
    # a whole word more decodes the same latent: the payload must be exactly that latent's coding
    for extra in (bytes(4), b"\xff" * 4, stream[-4:], bytes(8)):
        with pytest.raises(CodecError, match=r"corrupted stream: its payload is not the coding .*\(trailing bytes"):
            decompress(stream + extra, neighbour_logits, MODEL)
    with pytest.raises(CodecError, match="trailing bytes"):
        decompress(stream + b"\0", neighbour_logits, MODEL)


@pytest.mark.parametrize("bit", [0x01, 0x80])
def test_any_flipped_byte_is_refused_by_name_never_a_latent(stream, bit):
    # no stream CRC: the header's fields are checked by what they say, everything else by decoding
    named = ("corrupted|truncated|trailing|magic|version|invalid header|encoded for model|shape|checksum"
             "|range decoder failed")
    codec = Codec(neighbour_logits, (8, 16, 16), MODEL)
    for offset in range(len(stream)):
        data = bytearray(stream)
        data[offset] ^= bit
        with pytest.raises(CodecError, match=named):
            codec.decompress(bytes(data))
        with pytest.raises(CodecError, match=named):
            decompress(bytes(data), neighbour_logits, MODEL)


def test_a_flipped_model_id_byte_names_the_model_it_says(stream):
    data = bytearray(stream)
    data[8] ^= 0x01  # inside model_id (offsets 7..10)
    with pytest.raises(CodecError, match=f"encoded for model {bytes(data[7:11]).hex()}, this decoder has model {MODEL}"):
        decompress(bytes(data), neighbour_logits, MODEL)


def test_a_flipped_payload_byte_fails_the_latent_checksum(stream):
    data = bytearray(stream)
    data[HEADER_BYTES + 3] ^= 0x80
    with pytest.raises(CodecError, match="corrupted"):
        decompress(bytes(data), neighbour_logits, MODEL)


def test_a_decoder_with_other_probabilities_raises_instead_of_a_wrong_latent(stream):
    # same model_id, other logits (another runtime, say): the latent checksum catches it
    shifted = lambda b, k: neighbour_logits(b, k) + 0.5  # noqa: E731
    with pytest.raises(CodecError, match="checksum|range decoder failed"):
        decompress(stream, shifted, MODEL)


def test_a_payload_that_is_no_range_code_is_refused(stream):
    header, rng = read_header(stream), np.random.default_rng(10)
    for _ in range(20):  # well-formed streams of random words: never a latent, never constriction's own error
        garbage = pack_stream(header, rng.integers(0, 256, payload_bytes(stream), dtype=np.uint8).tobytes())
        with pytest.raises(CodecError, match="checksum|range decoder failed"):
            decompress(garbage, neighbour_logits, MODEL)


def test_a_model_returning_nan_or_a_wrong_shape_is_a_codec_error(stream):
    with pytest.raises(CodecError, match="NaN"):
        decompress(stream, lambda b, k: np.full(b.shape, np.nan, np.float32), MODEL)
    with pytest.raises(CodecError, match="logits of shape"):
        decompress(stream, lambda b, k: np.zeros(b.shape[1:], np.float32), MODEL)


@pytest.mark.parametrize("bits", [np.full((8, 8, 8), 2, np.uint8), np.zeros((8, 8), np.uint8),
                                  np.zeros((8, 8, 8), np.float32)])
def test_bits_that_are_not_a_binary_latent_are_refused(bits):
    with pytest.raises(ValueError, match="bits must be"):
        compress(bits, neighbour_logits, 8, MODEL)


# --- the Codec object -------------------------------------------------------------------------------

def test_the_codec_object_round_trips_and_checks_its_shape():
    codec = Codec(neighbour_logits, (4, 16, 16), MODEL, stages=5)
    latents = smooth_latents(np.random.default_rng(11), 3, (4, 16, 16))
    streams = codec.compress_batch(latents)
    assert read_header(streams[0]).stages == 5
    np.testing.assert_array_equal(codec.decompress_batch(streams), latents)
    np.testing.assert_array_equal(codec.decompress(codec.compress(latents[0])), latents[0])
    assert codec.ideal_bits(latents).shape == (3,) and isinstance(codec.ideal_bits(latents[0]), float)
    with pytest.raises(ValueError, match="this codec codes latents of"):
        codec.compress(latents[0, :2])


@pytest.mark.parametrize("kwargs", [{"model_id": "nothex"}, {"stages": 0}, {"latent_shape": (8, 8)}])
def test_a_codec_with_bad_settings_fails_at_construction(kwargs):
    with pytest.raises(ValueError):
        Codec(**{"logits_fn": neighbour_logits, "latent_shape": (8, 8, 8), "model_id": MODEL, **kwargs})
