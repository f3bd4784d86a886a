"""bitlatent.codec.header: the container refuses, by name, every stream it must not decode."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest

from bitlatent.codec.errors import CodecError
from bitlatent.codec.header import (
    FORMAT_VERSION,
    HEADER_BYTES,
    MAGIC,
    Header,
    check_model_id,
    pack_stream,
    read_header,
    unpack_stream,
)

MODEL = "00112233445566ff"
HEADER = Header(FORMAT_VERSION, (8, 16, 16), 8, MODEL, latent_crc32=0xDEADBEEF, payload_bytes=12)
PAYLOAD = bytes(range(100, 112))


def test_a_stream_reads_back_its_header_and_payload():
    data = pack_stream(HEADER, PAYLOAD)
    assert len(data) == HEADER_BYTES + len(PAYLOAD) + 4 == HEADER.stream_bytes
    assert data.startswith(MAGIC)
    assert unpack_stream(data) == (HEADER, PAYLOAD)
    assert read_header(bytearray(data)) == HEADER


@pytest.mark.parametrize("keep", [0, 3, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 5, HEADER.stream_bytes - 1])
def test_a_truncated_stream_is_refused(keep):
    with pytest.raises(CodecError, match="truncated"):
        read_header(pack_stream(HEADER, PAYLOAD)[:keep])


def test_trailing_bytes_are_refused():
    with pytest.raises(CodecError, match="trailing bytes"):
        read_header(pack_stream(HEADER, PAYLOAD) + b"\0")


@pytest.mark.parametrize("offset", range(HEADER.stream_bytes))
def test_any_flipped_byte_is_refused_by_name(offset):
    data = bytearray(pack_stream(HEADER, PAYLOAD))
    data[offset] ^= 0x04
    with pytest.raises(CodecError, match="corrupted|truncated|trailing|magic|version"):
        read_header(bytes(data))


def test_a_flipped_payload_byte_is_a_crc_mismatch():
    data = bytearray(pack_stream(HEADER, PAYLOAD))
    data[HEADER_BYTES + 3] ^= 0x80
    with pytest.raises(CodecError, match="corrupted stream: CRC32 mismatch"):
        read_header(bytes(data))


def test_a_flipped_model_id_byte_is_a_crc_mismatch():
    data = bytearray(pack_stream(HEADER, PAYLOAD))
    data[12] ^= 0x01  # inside model_id
    with pytest.raises(CodecError, match="CRC32 mismatch"):
        read_header(bytes(data))


def _with_version(version: int) -> bytes:
    """A stream whose version byte says ``version``, its CRC recomputed (a writer of that version)."""
    body = bytearray(pack_stream(HEADER, PAYLOAD)[:-4])
    body[4] = version
    return bytes(body) + struct.pack("<I", zlib.crc32(bytes(body)))


def test_a_newer_version_is_refused_with_advice():
    with pytest.raises(CodecError, match=f"version {FORMAT_VERSION + 1} is newer .* upgrade bitlatent"):
        read_header(_with_version(FORMAT_VERSION + 1))


def test_version_zero_is_unknown():
    with pytest.raises(CodecError, match="unknown stream format version 0"):
        read_header(_with_version(0))


def test_another_format_is_not_a_codec_stream():
    png = b"\x89PNG\r\n\x1a\n" + bytes(40)
    with pytest.raises(CodecError, match="not a bitlatent codec stream"):
        read_header(png)


def test_a_header_with_impossible_stages_is_refused():
    with pytest.raises(CodecError, match="invalid header"):
        read_header(pack_stream(Header(FORMAT_VERSION, (1, 2, 2), 5, MODEL, 0, 0), b""))


@pytest.mark.parametrize("model_id", ["", "0123", "0123456789abcdeg", "0123456789abcdef0", 12])
def test_a_model_id_must_be_16_hex_digits(model_id):
    with pytest.raises(ValueError, match="16 hex digits"):
        check_model_id(model_id)


def test_a_shape_that_does_not_fit_the_header_is_refused():
    with pytest.raises(ValueError, match="does not fit the header"):
        pack_stream(Header(FORMAT_VERSION, (8, 256, 256), 8, MODEL, 0, 0), b"")


def test_uppercase_model_ids_read_back_lowercase():
    data = pack_stream(Header(FORMAT_VERSION, (8, 8, 8), 8, MODEL.upper(), 0, 0), b"")
    assert read_header(data).model_id == MODEL
    assert np.frombuffer(data[10:18], np.uint8).tolist() == list(bytes.fromhex(MODEL))
