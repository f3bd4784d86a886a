"""Entropy coding of binary latents with a masked bit-level prior and constriction's range coder.

A latent is ``bits`` uint8 (C, h, w) in {0, 1}. Its bits are coded in the stages of
``schedule.coding_stages``: per stage, one call of the probability model on the bits known so far
(unknown bits are passed as 0), then that stage's bits are range coded, in raster order, with
the model's probabilities. The decoder makes the same calls with the same inputs, so it sees the
same probabilities and decodes the same bits.

Determinism: the encoder and decoder must get bit-identical logits from ``logits_fn`` for the same
inputs: the same model (``model_id``, checked) run by the same runtime on the same kind of device,
with the same batch composition where the runtime's kernels depend on it (decode a batch from
``compress_batch`` with ``decompress_batch`` over the same latents where in doubt). Probabilities are
then made exact: ``sigmoid`` in float64, rounded to a 2**-16 grid and clamped to
[2**-16, 1 - 2**-16], so no bit is impossible (a confidently wrong bit costs at most 16 bits) and the
coder's own fixed-point conversion of a value on that grid is exact. Should the logits differ
anyway, or the stream be damaged, the latent's CRC32 in the header turns a would-be wrong latent
into a ``CodecError``; and the decoder re-encodes what it decoded (the coder alone, with the
probabilities it already has) and refuses a payload that is not exactly that coding.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import constriction
import numpy as np

from .errors import CodecError
from .header import FORMAT_VERSION, Header, check_model_id, pack_stream, unpack_stream
from .schedule import DEFAULT_STAGES, coding_stages

__all__ = [
    "PROBABILITY_BITS",
    "BitLogits",
    "Codec",
    "compress",
    "compress_batch",
    "decompress",
    "decompress_batch",
    "ideal_bits",
    "quantised_probabilities",
]

# logits_fn(bits uint8 (n, C, h, w) in {0, 1}, known bool (n, C, h, w)) -> float32 logits (n, C, h, w):
# the logit of P(bit = 1 | the known bits); entries where ``known`` is True are ignored.
BitLogits = Callable[[np.ndarray, np.ndarray], np.ndarray]

# Probabilities live on a grid of 2**-PROBABILITY_BITS (part of the stream format, header.FORMAT_VERSION).
PROBABILITY_BITS = 16
_SCALE = float(1 << PROBABILITY_BITS)
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)
_queue = constriction.stream.queue  # a Rust extension's attribute, not an importable submodule


def quantised_probabilities(logits: np.ndarray) -> np.ndarray:
    """float64 P(bit = 1) of ``logits`` (any shape), on the 2**-16 grid in [2**-16, 1 - 2**-16]."""
    logits = np.asarray(logits, dtype=np.float64)
    if np.isnan(logits).any():
        raise CodecError("the probability model returned NaN logits")
    with np.errstate(over="ignore"):  # exp(+-large) -> inf -> p of 0 or 1, clamped below
        p = 1.0 / (1.0 + np.exp(-logits))
    return np.clip(np.rint(p * _SCALE), 1.0, _SCALE - 1.0) / _SCALE


def _as_latents(bits: np.ndarray, ndim: int) -> np.ndarray:
    """``bits`` as uint8 of ``ndim`` dims in {0, 1}, or a ValueError naming what is wrong."""
    bits = np.asarray(bits)
    if bits.ndim != ndim:
        want = "(C, h, w)" if ndim == 3 else "(n, C, h, w)"
        raise ValueError(f"bits must be {want}, got shape {bits.shape}")
    if bits.dtype.kind not in "biu" or (bits.size and (bits.min() < 0 or bits.max() > 1)):
        raise ValueError(f"bits must be integers in {{0, 1}}, got dtype {bits.dtype}")
    return bits.astype(np.uint8)


def _latent_crc32(bits: np.ndarray) -> int:
    """CRC32 of one latent (C, h, w) of 0/1, packed 8 bits a byte."""
    return zlib.crc32(np.packbits(bits.reshape(-1)).tobytes())


@functools.lru_cache(maxsize=64)
def _stage_positions(latent_shape: tuple[int, int, int], stages: int) -> tuple[np.ndarray, ...]:
    """Per stage, the flat raster indices (int64, ascending, read-only) of the bits it codes; cached,
    as a codec codes many latents of one shape."""
    stage = coding_stages(latent_shape, stages).reshape(-1)
    order = np.argsort(stage, kind="stable")
    order.flags.writeable = False
    return tuple(np.split(order, np.cumsum(np.bincount(stage, minlength=stages))[:-1]))


def _stage_loop(logits_fn: BitLogits, flat: np.ndarray, latent_shape: tuple[int, int, int],
                   stages: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The stage loop that encoder, decoder and ``ideal_bits`` share: per stage, ``(positions, p1)``.

    ``flat`` uint8 (n, N) holds the latents' bits (N = C*h*w): read by the model where known, and
    filled in by a decoder at ``positions`` before it asks for the next stage. ``positions`` int64 (k,)
    are the stage's flat raster indices, ``p1`` float64 (n, k) the quantised P(bit = 1) there, from one
    ``logits_fn`` call on the known bits (every unknown bit passed as 0, so encoder and decoder make the
    same call).
    """
    n = flat.shape[0]
    shape4 = (n, *latent_shape)
    known = np.zeros(flat.shape, dtype=bool)  # (n, N)
    for positions in _stage_positions(latent_shape, stages):
        inputs = np.where(known, flat, 0).astype(np.uint8).reshape(shape4)
        logits = np.asarray(logits_fn(inputs, known.reshape(shape4).copy()))
        if logits.shape != shape4:
            raise CodecError(f"the probability model returned logits of shape {logits.shape}, expected {shape4}")
        yield positions, quantised_probabilities(logits.reshape(n, -1)[:, positions])
        known[:, positions] = True


def ideal_bits(bits: np.ndarray, logits_fn: BitLogits, stages: int = DEFAULT_STAGES) -> float | np.ndarray:
    """The model's cross-entropy of ``bits`` under the coding schedule: ``-sum log2 p`` in bits.

    ``bits`` (C, h, w) gives a float; (n, C, h, w) gives float64 (n,), with one ``logits_fn`` call per stage
    for the batch. Uses the quantised probabilities the coder uses, so a stream's payload is this plus
    at most the range coder's final 32-bit word.
    """
    bits = np.asarray(bits)
    single = bits.ndim == 3
    latents = _as_latents(bits[None] if single else bits, 4)
    n, latent_shape = latents.shape[0], tuple(int(d) for d in latents.shape[1:])
    flat = latents.reshape(n, -1)
    total = np.zeros(n, dtype=np.float64)
    for positions, p1 in _stage_loop(logits_fn, flat, latent_shape, stages):
        total -= np.log2(np.where(flat[:, positions] == 1, p1, 1.0 - p1)).sum(axis=1)
    return float(total[0]) if single else total


def compress_batch(bits: np.ndarray, logits_fn: BitLogits, stages: int, model_id: str) -> list[bytes]:
    """One stream per latent of ``bits`` uint8 (n, C, h, w), with one ``logits_fn`` call per stage for all n.

    ``model_id``: 8 hex digits naming the model behind ``logits_fn`` (the weights' sha256[:8]);
    the decoder refuses a stream written for another.
    """
    check_model_id(model_id)
    latents = _as_latents(bits, 4)
    n, latent_shape = latents.shape[0], tuple(int(d) for d in latents.shape[1:])
    flat = latents.reshape(n, -1)
    encoders = [_queue.RangeEncoder() for _ in range(n)]
    for positions, p1 in _stage_loop(logits_fn, flat, latent_shape, stages):
        symbols = flat[:, positions].astype(np.int32)
        for encoder, symbol_row, p_row in zip(encoders, symbols, p1):
            encoder.encode(symbol_row, _BERNOULLI, p_row)
    streams = []
    for latent, encoder in zip(latents, encoders):
        payload = encoder.get_compressed().astype("<u4").tobytes()
        header = Header(FORMAT_VERSION, latent_shape, stages, model_id, _latent_crc32(latent))
        streams.append(pack_stream(header, payload))
    return streams


def compress(bits: np.ndarray, logits_fn: BitLogits, stages: int, model_id: str) -> bytes:
    """The stream of one latent ``bits`` uint8 (C, h, w) (see ``compress_batch``)."""
    return compress_batch(_as_latents(bits, 3)[None], logits_fn, stages, model_id)[0]


def decompress_batch(streams: Sequence[bytes], logits_fn: BitLogits, model_id: str,
                     latent_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """The latents uint8 (n, C, h, w) of ``streams``, with one ``logits_fn`` call per stage for all n.

    All streams must share one latent shape and stage count (as ``compress_batch`` writes them).

    Raises:
        CodecError: a stream is truncated, of a newer format version, for a model other than
            ``model_id``, of a shape other than ``latent_shape`` (when given) or than the other streams',
            decodes to a latent failing its checksum (a corrupted stream, or the model's logits differ
            from the encoder's), or has a payload other than the coding of that latent (trailing words,
            damage the checksum cannot see).
    """
    model_id = check_model_id(model_id).hex()  # lowercase, as headers read back
    if not streams:
        raise ValueError("decompress_batch needs at least one stream")
    parsed = []
    for i, data in enumerate(streams):
        try:
            parsed.append(unpack_stream(data))
        except CodecError as error:
            raise CodecError(f"stream {i}: {error}" if len(streams) > 1 else str(error)) from None
    first = parsed[0][0]
    for i, (header, _) in enumerate(parsed):
        if header.model_id != model_id:
            raise CodecError(f"stream {i} was encoded for model {header.model_id}, this decoder has model "
                             f"{model_id}: decode it with the model that encoded it")
        if latent_shape is not None and header.latent_shape != tuple(latent_shape):
            raise CodecError(f"stream {i} holds a latent of shape {header.latent_shape}, expected "
                             f"{tuple(latent_shape)}")
        if (header.latent_shape, header.stages) != (first.latent_shape, first.stages):
            raise CodecError(f"stream {i} has latent shape {header.latent_shape} with {header.stages} stages, "
                             f"stream 0 {first.latent_shape} with {first.stages}: decode them apart")
    n, shape = len(parsed), first.latent_shape
    decoders = [_queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32)) for _, payload in parsed]
    encoders = [_queue.RangeEncoder() for _ in range(n)]  # the decoded bits re-encoded: a canonical payload
    flat = np.zeros((n, int(np.prod(shape))), dtype=np.uint8)  # filled stage by stage
    for positions, p1 in _stage_loop(logits_fn, flat, shape, first.stages):
        for i, (decoder, encoder, p_row) in enumerate(zip(decoders, encoders, p1)):
            try:
                flat[i, positions] = decoder.decode(_BERNOULLI, p_row)
            except Exception as error:  # constriction's own errors: never pass them on bare
                raise CodecError(f"stream {i}: corrupted or truncated stream: the range decoder failed ({error})") from error
            encoder.encode(flat[i, positions].astype(np.int32), _BERNOULLI, p_row)
    latents = flat.reshape(n, *shape)
    for i, (latent, encoder, (header, payload)) in enumerate(zip(latents, encoders, parsed)):
        if _latent_crc32(latent) != header.latent_crc32:
            raise CodecError(f"stream {i}: the decoded latent fails its checksum: corrupted stream, truncated stream, "
                             "or a model that gave other probabilities than when encoding (same model_id, another "
                             "runtime, device or batch?)")
        if encoder.get_compressed().astype("<u4").tobytes() != payload:
            raise CodecError(f"stream {i}: corrupted stream: its payload is not the coding of the latent it decodes "
                             "to (trailing bytes, or damage the checksum cannot see)")
    return latents


def decompress(data: bytes, logits_fn: BitLogits, model_id: str,
               latent_shape: tuple[int, int, int] | None = None) -> np.ndarray:
    """The latent uint8 (C, h, w) of one stream (see ``decompress_batch`` for what raises)."""
    return decompress_batch([data], logits_fn, model_id, latent_shape)[0]


@dataclass(frozen=True)
class Codec:
    """The codec of one probability model: what ``bitlatent encode --compress`` / ``decode`` hold.

    codec = Codec(logits_fn, latent_shape=(8, 16, 16), model_id=sha256_file(weights)[:8])
    data = codec.compress(bits)          # bits uint8 (C, h, w) -> bytes
    bits = codec.decompress(data)        # refuses a stream of another model or latent shape
    """

    logits_fn: BitLogits  # the masked bit-level prior, see ``BitLogits``
    latent_shape: tuple[int, int, int]  # (C, h, w) of every latent this codec codes and decodes
    model_id: str  # 8 hex digits naming the model behind logits_fn, written into and checked in each stream
    stages: int = DEFAULT_STAGES  # coding stages (model calls per batch) for compress; decode reads the header's

    def __post_init__(self) -> None:
        object.__setattr__(self, "latent_shape", tuple(int(d) for d in self.latent_shape))
        check_model_id(self.model_id)
        coding_stages(self.latent_shape, self.stages)  # a bad shape or stage count fails here, not later

    def _check_shape(self, bits: np.ndarray, batched: bool) -> np.ndarray:
        bits = np.asarray(bits)
        if bits.shape[batched:] != self.latent_shape:
            raise ValueError(f"bits of shape {bits.shape}, this codec codes latents of {self.latent_shape}")
        return bits

    def compress(self, bits: np.ndarray) -> bytes:
        """bits uint8 (C, h, w) -> one stream."""
        return compress(self._check_shape(bits, False), self.logits_fn, self.stages, self.model_id)

    def compress_batch(self, bits: np.ndarray) -> list[bytes]:
        """bits uint8 (n, C, h, w) -> n streams, one model call per stage for the batch."""
        return compress_batch(self._check_shape(bits, True), self.logits_fn, self.stages, self.model_id)

    def decompress(self, data: bytes) -> np.ndarray:
        """One stream -> bits uint8 (C, h, w); ``CodecError`` for a bad or foreign stream."""
        return decompress(data, self.logits_fn, self.model_id, self.latent_shape)

    def decompress_batch(self, streams: Sequence[bytes]) -> np.ndarray:
        """n streams -> bits uint8 (n, C, h, w); ``CodecError`` for a bad or foreign stream."""
        return decompress_batch(streams, self.logits_fn, self.model_id, self.latent_shape)

    def ideal_bits(self, bits: np.ndarray) -> float | np.ndarray:
        """The model's cross-entropy in bits of (C, h, w) -> float, or of (n, C, h, w) -> (n,)."""
        return ideal_bits(self._check_shape(bits, np.asarray(bits).ndim == 4), self.logits_fn, self.stages)
