"""Kedro dataset for a folder of image shards (see ``bitlatent.data.shards``).

``save`` takes a finished staging folder and moves it into place in one rename; ``load``
returns an ``ImageShards`` reader whose shards are memory-mapped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kedro.io import AbstractDataset

from bitlatent.data.shards import INDEX_FILE, ImageShards, commit_staged


class ImageShardsDataset(AbstractDataset[Path, ImageShards]):
    """``uint8 (n, H, W, 3)`` ``.npy`` shards per split under ``path``, plus ``index.json``."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> ImageShards:
        return ImageShards(self._path)

    def save(self, data: Path | ImageShards) -> None:
        staging = data.root if isinstance(data, ImageShards) else Path(data)
        if staging.resolve() != self._path.resolve():
            commit_staged(staging, self._path)

    def _exists(self) -> bool:
        return (self._path / INDEX_FILE).is_file()

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}
