"""The bitstream's container: a compact versioned header, then the range coder's payload to the end.

Layout (little-endian), ``HEADER_BYTES`` = 15 bytes of header, then the payload::

    offset size field
         0    2 magic          b"BL"
         2    1 version        FORMAT_VERSION; a reader refuses a newer one
         3    3 C, h, w        the latent shape, one byte each
         6    1 stages         the number of coding stages (``schedule.coding_stages``)
         7    4 model_id       8 hex digits of the probability model's identity, as 4 bytes
        11    4 latent_crc32   CRC32 of ``np.packbits`` of the latent (C, h, w): checks the decoded latent
        15    n payload        the range coder's 32-bit words, little-endian, to the end of the stream

There is no length field and no checksum of the stream itself: whatever holds the streams (the file
of ``container``, a database row) knows each stream's length, and every header costs its bytes on
each latent (a 512-bit latent codes to a few dozen bytes). What the header leaves out, the decoder
checks after decoding (``coder.decompress_batch``): the latent's CRC32 turns a corrupted header or
payload, or a decoder whose probabilities differ from the encoder's (same model_id, another
runtime), into a ``CodecError``, and the payload must be exactly the coding of the latent it
decodes to, so trailing words and damage in the coder's slack bits are refused too. A truncated
stream fails here (not whole 32-bit words, or no payload) or there (the coder runs dry, or the CRC).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from .errors import CodecError

__all__ = ["FORMAT_VERSION", "HEADER_BYTES", "MAGIC", "MODEL_ID_DIGITS", "Header", "check_model_id", "pack_stream",
           "read_header", "unpack_stream"]

MAGIC = b"BL"
# Version 1: this layout, the splitmix64/cosine schedule of ``schedule``, probabilities on a 2**-16 grid
# (``coder``), constriction's queue.RangeEncoder with a Bernoulli(perfect=False) model. Changing any of
# these is a new version, and the old one stays readable or is refused by name.
FORMAT_VERSION = 1
MODEL_ID_DIGITS = 8  # hex digits of a model id: the first 8 of the weights' (or graph's) sha256

_LAYOUT = struct.Struct("<2sB3BB4sI")
HEADER_BYTES = _LAYOUT.size  # 15
_WORD = 4  # bytes of one range coder word


def check_model_id(model_id: str) -> bytes:
    """The 4 bytes of an 8-hex-digit model id (the first 8 hex digits of the weights' sha256)."""
    if not isinstance(model_id, str) or len(model_id) != MODEL_ID_DIGITS:
        raise ValueError(f"model_id must be {MODEL_ID_DIGITS} hex digits (sha256 of the weights [:{MODEL_ID_DIGITS}]), "
                         f"got {model_id!r}")
    try:
        return bytes.fromhex(model_id)
    except ValueError:
        raise ValueError(f"model_id must be {MODEL_ID_DIGITS} hex digits, got {model_id!r}") from None


@dataclass(frozen=True)
class Header:
    """What a stream's header says."""

    version: int  # format version the stream was written in
    latent_shape: tuple[int, int, int]  # (C, h, w) of the coded latent
    stages: int  # coding stages (one model call each)
    model_id: str  # 8 lowercase hex digits naming the probability model
    latent_crc32: int  # CRC32 of np.packbits(latent)


def pack_stream(header: Header, payload: bytes) -> bytes:
    """The stream of ``header`` and ``payload``."""
    c, h, w = header.latent_shape
    if not (max(c, h, w) <= 255 and 1 <= header.stages <= 255):
        raise ValueError(f"latent shape {header.latent_shape} (each <= 255) or stages {header.stages} "
                         "(<= 255) does not fit the header")
    return _LAYOUT.pack(MAGIC, header.version, c, h, w, header.stages, check_model_id(header.model_id),
                        header.latent_crc32) + bytes(payload)


def read_header(data: bytes) -> Header:
    """The header of a stream, checked as far as it can be without decoding.

    Raises:
        CodecError: not a codec stream, a newer or unknown format version, truncated (shorter than the
            header, no payload, or a payload of no whole number of 32-bit words: a byte too many reads
            the same), or a shape and stage count that cannot be.
    """
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise CodecError(f"truncated stream: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, c, h, w, stages, model_id, latent_crc = _LAYOUT.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not a bitlatent codec stream: magic {magic!r}, expected {MAGIC!r}")
    if version > FORMAT_VERSION:
        raise CodecError(f"stream format version {version} is newer than this bitlatent reads "
                         f"({FORMAT_VERSION}): upgrade bitlatent to decode it")
    if version != FORMAT_VERSION:
        raise CodecError(f"unknown stream format version {version} (this bitlatent reads {FORMAT_VERSION})")
    payload = len(data) - HEADER_BYTES
    if payload == 0:
        raise CodecError(f"truncated stream: the {HEADER_BYTES}-byte header and no payload")
    if payload % _WORD:
        raise CodecError(f"truncated stream or trailing bytes: a payload of {payload} bytes is not whole "
                         f"{8 * _WORD}-bit words")
    if min(c, h, w) < 1 or not 1 <= stages <= c * h * w:
        raise CodecError(f"invalid header: latent shape {(c, h, w)} with {stages} stages")
    return Header(version, (c, h, w), stages, model_id.hex(), latent_crc)


def unpack_stream(data: bytes) -> tuple[Header, bytes]:
    """The checked header and the payload of a stream (see ``read_header`` for what raises)."""
    header = read_header(data)
    return header, bytes(data[HEADER_BYTES:])
