"""Latent shards: packed bits ``uint8 (n, ceil(h·w·C/8))`` + the image ids in row order + the
latent spec, in one ``.npz`` (no pickle: ids are a fixed-width unicode array).

The same file format serves the pipelines' latent shards and the ``bitlatent encode`` /
``bitlatent decode`` commands. Layout of the latent folders::

    latents/pretrain/shard-00000.npz              written by decoder_pretraining
    latents/part-0-of-8/adapt/shard-00003.npz     written by latent_adaptation, job 0 of 8
    latents/part-0-of-8/index.json                written last by that job

Reads use ``np.load(allow_pickle=False)``: a latent file from anyone is safe to open.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlatent.core.binary import LatentSpec
from bitlatent.core.io import atomic_write_bytes


@dataclass
class LatentShard:
    bits: np.ndarray  # uint8 (n, bytes_per_image), packed
    image_ids: np.ndarray  # str (n,)
    spec: LatentSpec

    def __post_init__(self) -> None:
        if self.bits.dtype != np.uint8 or self.bits.ndim != 2:
            raise ValueError(f"packed bits must be uint8 (n, bytes), got {self.bits.dtype} {self.bits.shape}")
        if self.bits.shape[1] != self.spec.bytes_per_image:
            raise ValueError(f"{self.bits.shape[1]} bytes per row, the spec says {self.spec.bytes_per_image}")
        if len(self.image_ids) != len(self.bits):
            raise ValueError(f"{len(self.image_ids)} image ids for {len(self.bits)} latents")


def save_latent_shard(path: Path, shard: LatentShard) -> None:
    """Write one latent shard atomically."""
    buffer = io.BytesIO()
    np.savez(buffer, bits=shard.bits, image_ids=np.asarray(shard.image_ids, dtype=str),
             spec=np.asarray(json.dumps(shard.spec.to_dict())))
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_latent_shard(path: Path) -> LatentShard:
    """Read one latent shard (never unpickles)."""
    with np.load(Path(path), allow_pickle=False) as archive:
        missing = {"bits", "image_ids", "spec"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} is not a bitlatent latent file: missing {sorted(missing)}")
        spec = LatentSpec.from_dict(json.loads(str(archive["spec"])))
        return LatentShard(archive["bits"], archive["image_ids"], spec)


def load_latent_folder(root: Path) -> dict[str, LatentShard]:
    """All latent shards under ``root``, merged per split (keys: split names).

    ``root/<split>/shard-*.npz`` and ``root/part-*/<split>/shard-*.npz`` are both read, in
    name order, so the pretraining latents and every adaptation job's output come together.
    """
    merged: dict[str, list[LatentShard]] = {}
    for path in sorted(Path(root).glob("**/shard-*.npz")):
        merged.setdefault(path.parent.name, []).append(load_latent_shard(path))
    return {
        split: LatentShard(np.concatenate([s.bits for s in shards]),
                           np.concatenate([s.image_ids for s in shards]), shards[0].spec)
        for split, shards in merged.items()
    }
