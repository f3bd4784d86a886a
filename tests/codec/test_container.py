"""bitlatent.codec.container: the file of streams `encode --compress` writes, and every way it can be wrong."""

from __future__ import annotations

import io

import numpy as np
import pytest

from bitlatent.codec import CodecError
from bitlatent.codec.container import STREAMS_VERSION, is_stream_file, load_streams, save_streams

SPEC = {"h": 4, "w": 4, "bits_per_cell": 4, "image_size": 16, "bit_order": "big", "layout": "CHW"}
STREAMS = [b"BLTc-one", b"", b"BLTc-three-bytes"]


def test_streams_names_and_spec_come_back(tmp_path):
    save_streams(tmp_path / "s.npz", STREAMS, ["a.png", "dir/b.jpg", "c"], SPEC)
    assert is_stream_file(tmp_path / "s.npz")
    got = load_streams(tmp_path / "s.npz")
    assert got.streams == STREAMS and list(got.image_ids) == ["a.png", "dir/b.jpg", "c"] and got.spec == SPEC
    assert got.stream_bits == 8 * sum(map(len, STREAMS))


def test_a_latent_shard_or_another_file_is_not_a_stream_file(tmp_path):
    np.savez(tmp_path / "shard.npz", bits=np.zeros((1, 8), np.uint8), image_ids=np.array(["a"]), spec=np.array("{}"))
    (tmp_path / "text.npz").write_text("hello")
    assert not is_stream_file(tmp_path / "shard.npz") and not is_stream_file(tmp_path / "text.npz")


def test_truncated_corrupted_newer_or_inconsistent_files_are_codec_errors(tmp_path):
    save_streams(tmp_path / "s.npz", STREAMS, ["a", "b", "c"], SPEC)
    data = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CodecError, match="not a readable file of streams"):
        load_streams(tmp_path / "cut.npz")
    at = data.index(b"BLTc-three")  # a byte of a stream, inside the zip member
    (tmp_path / "flip.npz").write_bytes(data[:at] + bytes([data[at] ^ 1]) + data[at + 1:])
    with pytest.raises(CodecError, match="not a readable file of streams"):  # the zip member's CRC
        load_streams(tmp_path / "flip.npz")

    def rewrite(name: str, **entries) -> None:
        with np.load(tmp_path / "s.npz") as archive:
            arrays = {k: archive[k] for k in archive.files}
        buffer = io.BytesIO()
        np.savez(buffer, **{**arrays, **entries})
        (tmp_path / name).write_bytes(buffer.getvalue())

    rewrite("newer.npz", version=np.asarray(STREAMS_VERSION + 1))
    with pytest.raises(CodecError, match="version 2, this bitlatent reads 1: upgrade"):
        load_streams(tmp_path / "newer.npz")
    rewrite("offsets.npz", offsets=np.array([0, 3, 2, 24]))
    with pytest.raises(CodecError, match="inconsistent stream offsets"):
        load_streams(tmp_path / "offsets.npz")
    rewrite("spec.npz", spec=np.asarray("{not json"))
    with pytest.raises(CodecError, match="unreadable latent spec"):
        load_streams(tmp_path / "spec.npz")
    rewrite("format.npz", format=np.asarray("bitlatent.other"))
    with pytest.raises(CodecError, match="format 'bitlatent.other'"):
        load_streams(tmp_path / "format.npz")
