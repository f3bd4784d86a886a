"""The bitstream's container: a small versioned header, the range coder's payload, a CRC32.

Layout (little-endian), ``HEADER_BYTES`` = 26 bytes of header, then the payload, then 4 bytes of CRC::

    offset size field
         0    4 magic          b"BLTc"
         4    1 version        FORMAT_VERSION; a reader refuses a newer one
         5    3 C, h, w        the latent shape, one byte each
         8    2 stages         the number of coding stages (``schedule.coding_stages``)
        10    8 model_id       16 hex digits of the probability model's identity, as 8 bytes
        18    4 latent_crc32   CRC32 of ``np.packbits`` of the latent (C, h, w): checks the decoded latent
        22    4 payload_bytes  length of the payload that follows
        26    n payload        the range coder's 32-bit words, little-endian
    26 + n    4 crc32          CRC32 of everything before it (header and payload)

The stream CRC catches truncation and corruption in storage or transit; the latent CRC catches a
decoder whose probabilities differ from the encoder's (same model_id, but another runtime), which
would otherwise decode a wrong latent without noticing.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

from .errors import CodecError

__all__ = ["FORMAT_VERSION", "HEADER_BYTES", "MAGIC", "Header", "check_model_id", "pack_stream", "read_header",
           "unpack_stream"]

MAGIC = b"BLTc"
# Version 1: the splitmix64/cosine schedule of ``schedule``, probabilities on a 2**-16 grid (``coder``),
# constriction's queue.RangeEncoder with a Bernoulli(perfect=False) model. Changing any of these is a
# new version, and the old one stays readable or is refused by name.
FORMAT_VERSION = 1

_LAYOUT = struct.Struct("<4sB3BH8sII")
HEADER_BYTES = _LAYOUT.size  # 26
_CRC = struct.Struct("<I")


def check_model_id(model_id: str) -> bytes:
    """The 8 bytes of a 16-hex-digit model id (e.g. the first 16 hex of the weights' sha256)."""
    if not isinstance(model_id, str) or len(model_id) != 16:
        raise ValueError(f"model_id must be 16 hex digits (e.g. sha256 of the weights [:16]), got {model_id!r}")
    try:
        return bytes.fromhex(model_id)
    except ValueError:
        raise ValueError(f"model_id must be 16 hex digits, got {model_id!r}") from None


@dataclass(frozen=True)
class Header:
    """What a stream's header says."""

    version: int  # format version the stream was written in
    latent_shape: tuple[int, int, int]  # (C, h, w) of the coded latent
    stages: int  # coding stages (one model call each)
    model_id: str  # 16 lowercase hex digits naming the probability model
    latent_crc32: int  # CRC32 of np.packbits(latent)
    payload_bytes: int  # length of the range coder's payload

    @property
    def stream_bytes(self) -> int:
        """Length of the whole stream: header, payload and CRC."""
        return HEADER_BYTES + self.payload_bytes + _CRC.size


def pack_stream(header: Header, payload: bytes) -> bytes:
    """The stream of ``header`` and ``payload`` with its CRC32."""
    c, h, w = header.latent_shape
    if not (max(c, h, w) <= 255 and 1 <= header.stages <= 0xFFFF):
        raise ValueError(f"latent shape {header.latent_shape} (each <= 255) or stages {header.stages} "
                         "(<= 65535) does not fit the header")
    head = _LAYOUT.pack(MAGIC, header.version, c, h, w, header.stages, check_model_id(header.model_id),
                        header.latent_crc32, len(payload))
    body = head + payload
    return body + _CRC.pack(zlib.crc32(body))


def read_header(data: bytes) -> Header:
    """The header of a stream, checked against the stream's length and CRC32.

    Raises:
        CodecError: not a codec stream, a newer or unknown format version, truncated, trailing bytes,
            or a CRC mismatch (corrupted).
    """
    data = bytes(data)
    if len(data) < HEADER_BYTES:
        raise CodecError(f"truncated stream: {len(data)} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, c, h, w, stages, model_id, latent_crc, payload_bytes = _LAYOUT.unpack_from(data)
    if magic != MAGIC:
        raise CodecError(f"not a bitlatent codec stream: magic {magic!r}, expected {MAGIC!r}")
    if version > FORMAT_VERSION:
        raise CodecError(f"stream format version {version} is newer than this bitlatent reads "
                         f"({FORMAT_VERSION}): upgrade bitlatent to decode it")
    if version != FORMAT_VERSION:
        raise CodecError(f"unknown stream format version {version} (this bitlatent reads {FORMAT_VERSION})")
    header = Header(version, (c, h, w), stages, model_id.hex(), latent_crc, payload_bytes)
    if len(data) < header.stream_bytes:
        raise CodecError(f"truncated stream: {len(data)} bytes, the header announces {header.stream_bytes}")
    if len(data) > header.stream_bytes:
        raise CodecError(f"{len(data) - header.stream_bytes} trailing bytes after the stream's "
                         f"{header.stream_bytes} bytes")
    (crc,) = _CRC.unpack_from(data, header.stream_bytes - _CRC.size)
    if crc != zlib.crc32(data[: header.stream_bytes - _CRC.size]):
        raise CodecError("corrupted stream: CRC32 mismatch over header and payload")
    if min(c, h, w) < 1 or not 1 <= stages <= c * h * w:
        raise CodecError(f"invalid header: latent shape {(c, h, w)} with {stages} stages")
    return header


def unpack_stream(data: bytes) -> tuple[Header, bytes]:
    """The checked header and the payload of a stream (see ``read_header`` for what raises)."""
    header = read_header(data)
    return header, bytes(data[HEADER_BYTES: HEADER_BYTES + header.payload_bytes])
