"""The file of streams ``bitlatent encode --compress`` writes and ``bitlatent decode`` reads: an ``.npz``
(numpy only, never a pickle) of one codec stream per image, with the image names and the latent spec.

    format     str        "bitlatent.latent_streams"
    version    int64      STREAMS_VERSION; a reader refuses a newer one
    streams    uint8 (S,) every stream (``coder.compress_batch``), one after another
    offsets    int64 (n + 1,)   stream i is ``streams[offsets[i]:offsets[i + 1]]``
    image_ids  str (n,)   the images' names, in row order
    spec       str        the latent spec as JSON (``core.binary.LatentSpec.to_dict()``: grid, bits per
                          cell, image size), checked against the decoder's before decoding

Each stream carries its own header (format version, latent shape, the entropy model's id, the latent's
CRC32), so the file adds no model id of its own: the streams name the model they need. A stream has no
length field: ``offsets`` is where each one ends. A latent shard (``data.latent_shards``)
has no ``streams`` entry; ``is_stream_file`` tells the two apart.
"""

from __future__ import annotations

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitlatent.core.io import atomic_write_bytes

from .errors import CodecError

__all__ = ["STREAMS_FORMAT", "STREAMS_VERSION", "StreamFile", "is_stream_file", "load_streams", "save_streams"]

STREAMS_FORMAT = "bitlatent.latent_streams"
STREAMS_VERSION = 1
_KEYS = {"format", "version", "streams", "offsets", "image_ids", "spec"}


@dataclass
class StreamFile:
    """What a file of streams holds."""

    streams: list[bytes]  # one codec stream per image
    image_ids: np.ndarray  # str (n,)
    spec: dict[str, Any]  # the latent spec (``LatentSpec.to_dict()``)

    @property
    def stream_bits(self) -> int:
        """Bits of all streams, headers included (not the container's own bytes)."""
        return 8 * sum(len(s) for s in self.streams)


def save_streams(path: str | Path, streams: list[bytes], image_ids: list[str] | np.ndarray, spec: dict[str, Any]) -> None:
    """Write a file of streams atomically."""
    if len(streams) != len(image_ids):
        raise ValueError(f"{len(streams)} streams for {len(image_ids)} image ids")
    offsets = np.concatenate([[0], np.cumsum([len(s) for s in streams], dtype=np.int64)]).astype(np.int64)
    buffer = io.BytesIO()
    np.savez(buffer, format=np.asarray(STREAMS_FORMAT), version=np.asarray(STREAMS_VERSION, dtype=np.int64),
             streams=np.frombuffer(b"".join(streams), dtype=np.uint8), offsets=offsets,
             image_ids=np.asarray(image_ids, dtype=str), spec=np.asarray(json.dumps(spec)))  # fmt: skip
    atomic_write_bytes(Path(path), buffer.getvalue())


def is_stream_file(path: str | Path) -> bool:
    """Whether ``path`` is an ``.npz`` with a ``streams`` entry (False for a latent shard or a non-zip file)."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            return "streams" in archive.files
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return False


def load_streams(path: str | Path) -> StreamFile:
    """Read a file of streams (never unpickles). The streams themselves are checked when decoded.

    Raises:
        CodecError: not a readable file of streams, a newer container version, or inconsistent offsets.
    """
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            missing = _KEYS - set(archive.files)
            if missing:
                raise CodecError(f"{path} is not a bitlatent file of streams: missing {sorted(missing)}")
            entries = {key: archive[key] for key in _KEYS}
    except CodecError:
        raise
    except Exception as error:  # noqa: BLE001 - a truncated zip, a damaged member: say so, never a traceback
        raise CodecError(f"{path}: not a readable file of streams ({error})") from error
    if str(entries["format"]) != STREAMS_FORMAT:
        raise CodecError(f"{path}: format {str(entries['format'])!r}, expected {STREAMS_FORMAT!r}")
    version = int(entries["version"])
    if version != STREAMS_VERSION:
        raise CodecError(f"{path}: file of streams version {version}, this bitlatent reads {STREAMS_VERSION}"
                         + (": upgrade bitlatent to decode it" if version > STREAMS_VERSION else ""))
    data, offsets, ids = entries["streams"], entries["offsets"].astype(np.int64), entries["image_ids"]
    if (data.dtype != np.uint8 or data.ndim != 1 or offsets.ndim != 1 or len(offsets) != len(ids) + 1
            or offsets[0] != 0 or offsets[-1] != len(data) or (np.diff(offsets) < 0).any()):  # fmt: skip
        raise CodecError(f"{path}: inconsistent stream offsets ({len(offsets)} offsets, {len(ids)} images, "
                         f"{len(data)} bytes)")
    try:
        spec = json.loads(str(entries["spec"]))
    except ValueError as error:
        raise CodecError(f"{path}: unreadable latent spec ({error})") from error
    raw = data.tobytes()
    streams = [raw[offsets[i]: offsets[i + 1]] for i in range(len(ids))]
    return StreamFile(streams, ids, spec)
