"""bitlatent.codec.header: the compact layout reads back, and the container refuses, by name, every stream
it can tell is not one without decoding (tests/codec/test_coder.py refuses the rest by decoding)."""

from __future__ import annotations

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

MODEL = "001122ff"
HEADER = Header(FORMAT_VERSION, (8, 16, 16), 8, MODEL, latent_crc32=0xDEADBEEF)
PAYLOAD = bytes(range(100, 112))  # three 32-bit words


def test_the_header_is_15_bytes_and_the_payload_runs_to_the_end():
    data = pack_stream(HEADER, PAYLOAD)
    assert HEADER_BYTES == 15 and len(data) == HEADER_BYTES + len(PAYLOAD)
    assert data.startswith(MAGIC) and data[2] == FORMAT_VERSION and tuple(data[3:7]) == (8, 16, 16, 8)
    assert data[7:11] == bytes.fromhex(MODEL) and data[11:15] == (0xDEADBEEF).to_bytes(4, "little")
    assert unpack_stream(data) == (HEADER, PAYLOAD)
    assert read_header(bytearray(data)) == HEADER


@pytest.mark.parametrize("keep", [0, 3, HEADER_BYTES - 1, HEADER_BYTES, HEADER_BYTES + 5, len(PAYLOAD) + HEADER_BYTES - 1])
def test_a_truncated_stream_is_refused(keep):
    with pytest.raises(CodecError, match="truncated"):
        read_header(pack_stream(HEADER, PAYLOAD)[:keep])


def test_trailing_bytes_are_refused():
    # a whole trailing word is refused when decoding (test_coder.test_trailing_words_are_refused)
    with pytest.raises(CodecError, match="trailing bytes"):
        read_header(pack_stream(HEADER, PAYLOAD) + b"\0")


@pytest.mark.parametrize("offset", range(3))
def test_a_flipped_magic_or_version_byte_is_refused_by_name(offset):
    data = bytearray(pack_stream(HEADER, PAYLOAD))
    data[offset] ^= 0x04
    with pytest.raises(CodecError, match="magic|version"):
        read_header(bytes(data))


def _with_version(version: int) -> bytes:
    """A stream whose version byte says ``version`` (a writer of that version)."""
    body = bytearray(pack_stream(HEADER, PAYLOAD))
    body[2] = version
    return bytes(body)


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


@pytest.mark.parametrize("shape, stages", [((1, 2, 2), 5), ((0, 16, 16), 8), ((8, 16, 0), 1)])
def test_a_header_with_impossible_stages_or_shape_is_refused(shape, stages):
    with pytest.raises(CodecError, match="invalid header"):
        read_header(pack_stream(Header(FORMAT_VERSION, shape, stages, MODEL, 0), PAYLOAD))


@pytest.mark.parametrize("model_id", ["", "0123", "0123456g", "012345678", "0123456789abcdef", 12])
def test_a_model_id_must_be_8_hex_digits(model_id):
    with pytest.raises(ValueError, match="8 hex digits"):
        check_model_id(model_id)


@pytest.mark.parametrize("shape, stages", [((8, 256, 256), 8), ((8, 16, 16), 256)])
def test_a_shape_or_stage_count_that_does_not_fit_the_header_is_refused(shape, stages):
    with pytest.raises(ValueError, match="does not fit the header"):
        pack_stream(Header(FORMAT_VERSION, shape, stages, MODEL, 0), b"")


def test_uppercase_model_ids_read_back_lowercase():
    data = pack_stream(Header(FORMAT_VERSION, (8, 8, 8), 8, MODEL.upper(), 0), PAYLOAD)
    assert read_header(data).model_id == MODEL
    assert np.frombuffer(data[7:11], np.uint8).tolist() == list(bytes.fromhex(MODEL))
