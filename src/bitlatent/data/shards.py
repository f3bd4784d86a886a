"""Image shards: ``uint8 (n, H, W, 3)`` ``.npy`` files, fixed rows per shard, one folder per
split, memory-mapped on read, with an ``index.json`` that is written last.

Layout::

    image_shards/
      index.json                       {"image_size": 64, "rows_per_shard": 10000, "splits": {...}}
      pretrain/shard-00000.npy         uint8 (10000, 64, 64, 3)
      pretrain/shard-00001.npy         uint8 (n <= 10000, 64, 64, 3)
      adapt/…  test/…

Writing goes to a staging folder; ``commit_staged`` moves it into place in one rename, so a
killed run never leaves a half-written set of shards that looks complete.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bitlatent.core.io import atomic_save_npy, atomic_write_bytes, replace_dir

INDEX_FILE = "index.json"


def shard_name(index: int) -> str:
    return f"shard-{index:05d}.npy"


class ShardWriter:
    """Appends images split by split into fixed-size shards inside a staging folder.

    Memory is one shard buffer per split, whatever the number of images.
    """

    def __init__(self, staging: Path, image_size: int, rows_per_shard: int):
        self.staging = Path(staging)
        self.image_size = image_size
        self.rows_per_shard = rows_per_shard
        self._buffers: dict[str, np.ndarray] = {}
        self._filled: dict[str, int] = {}
        self._shards: dict[str, list[int]] = {}  # split -> rows of each written shard

    def add(self, split: str, pixels: np.ndarray) -> tuple[int, int]:
        """Append one (H, W, 3) uint8 image; return its (shard, row)."""
        if split not in self._buffers:
            shape = (self.rows_per_shard, self.image_size, self.image_size, 3)
            self._buffers[split] = np.empty(shape, dtype=np.uint8)
            self._filled[split] = 0
            self._shards[split] = []
        row = self._filled[split]
        self._buffers[split][row] = pixels
        self._filled[split] = row + 1
        shard = len(self._shards[split])
        if self._filled[split] == self.rows_per_shard:
            self._flush(split)
        return shard, row

    def _flush(self, split: str) -> None:
        rows = self._filled[split]
        if rows == 0:
            return
        shard = len(self._shards[split])
        atomic_save_npy(self.staging / split / shard_name(shard), self._buffers[split][:rows])
        self._shards[split].append(rows)
        self._filled[split] = 0

    def close(self) -> dict:
        """Flush partial shards, write ``index.json`` last, and return the index."""
        for split in list(self._buffers):
            self._flush(split)
        self._buffers.clear()
        index = {
            "image_size": self.image_size,
            "rows_per_shard": self.rows_per_shard,
            "splits": {
                split: {"num_images": sum(rows), "shards": [
                    {"file": f"{split}/{shard_name(i)}", "rows": r} for i, r in enumerate(rows)
                ]}
                for split, rows in sorted(self._shards.items())
            },
        }
        atomic_write_bytes(self.staging / INDEX_FILE, json.dumps(index, indent=2).encode())
        return index


def commit_staged(staging: Path, target: Path) -> None:
    """Move a finished staging folder to ``target``, replacing what was there."""
    if not (staging / INDEX_FILE).is_file():
        raise ValueError(f"{staging} has no {INDEX_FILE}: the shards were not finished")
    replace_dir(staging, target)


@dataclass
class ImageShards:
    """Read access to a committed (or staged) set of image shards; every read is a memmap."""

    root: Path

    def __post_init__(self) -> None:
        self.root = Path(self.root)
        index_path = self.root / INDEX_FILE
        if not index_path.is_file():
            raise FileNotFoundError(
                f"{index_path} not found: run `kedro run --pipelines data_validation` first"
            )
        self.index = json.loads(index_path.read_text())

    @property
    def image_size(self) -> int:
        return int(self.index["image_size"])

    @property
    def splits(self) -> list[str]:
        return list(self.index["splits"])

    def num_images(self, split: str) -> int:
        return int(self.index["splits"].get(split, {}).get("num_images", 0))

    def num_shards(self, split: str) -> int:
        return len(self.index["splits"].get(split, {}).get("shards", []))

    def shard(self, split: str, shard: int) -> np.ndarray:
        """uint8 (n, H, W, 3), memory-mapped."""
        entry = self.index["splits"][split]["shards"][shard]
        return np.load(self.root / entry["file"], mmap_mode="r")

    def images(self, split: str, shard: int, rows: np.ndarray) -> np.ndarray:
        """Copy of the given rows of one shard: uint8 (len(rows), H, W, 3)."""
        return np.asarray(self.shard(split, shard)[np.asarray(rows)])
