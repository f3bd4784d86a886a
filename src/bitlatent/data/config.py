"""The ``data`` parameter group (``conf/base/parameters_data_validation.yml``) as a typed config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bitlatent.config import ConfigGroup
from bitlatent.data.splits import check_fractions

FORMATS = ("synthetic", "coco", "csv", "jsonl", "folder")


@dataclass
class DataConfig(ConfigGroup):
    """Where the pairs come from and how they become validated shards."""

    GROUP = "data"

    format: str = "synthetic"
    """One of ``synthetic``, ``coco``, ``csv``, ``jsonl``, ``folder``."""
    path: str | None = None
    """The captions file (csv, jsonl, coco JSON) or folder (coco root, folder). Unused for synthetic."""
    image_root: str | None = None
    """The one folder relative image paths are taken against. Default (null): the captions file's folder
    first, then an ``images/`` folder beside it; a path never resolves outside them (docs/data.md)."""
    image_size: int = 64
    """Side of the square images written to the shards; a power of two."""
    max_pairs: int | None = 2000
    """Rows read from the source (all when null). For ``synthetic``, the number of pairs made."""
    max_reject_fraction: float = 0.05
    """The run fails when more than this fraction of the input rows is rejected."""
    rows_per_shard: int = 10_000
    """Images per ``.npy`` shard."""
    chunk_rows: int = 10_000
    """Rows validated together (one Great Expectations batch); bounds memory with the shards."""
    splits: dict[str, float] = field(default_factory=lambda: {"pretrain": 0.5, "adapt": 0.4, "test": 0.1})
    """Fractions of images per split, drawn from a hash of the image id."""
    split_seed: int = 0
    """Seed of the split hash; change it to draw another split."""
    max_image_pixels: int = 64_000_000
    """Declared width × height above which a file is a decompression bomb and is not decoded."""
    scratch_dir: str = "data/02_intermediate/scratch"
    """Staging area for shards being written (same filesystem as the outputs, so moves are renames)."""
    validation: dict[str, Any] = field(default_factory=dict)
    """Limits for validation (``ValidationLimits``): caption length, image sides, constant images."""
    synthetic: dict[str, Any] = field(default_factory=dict)
    """Options of the synthetic source (``SyntheticConfig``); ``num_pairs`` comes from ``max_pairs``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in FORMATS:
            raise ValueError(f"data.format must be one of {FORMATS}, got {self.format!r}")
        if self.format != "synthetic" and not self.path:
            raise ValueError(f"data.format={self.format} needs data.path (the captions file or folder)")
        if self.image_size < 8 or self.image_size & (self.image_size - 1):
            raise ValueError(f"data.image_size must be a power of two >= 8, got {self.image_size}")
        if not 0.0 <= self.max_reject_fraction <= 1.0:
            raise ValueError(f"data.max_reject_fraction must be in [0, 1], got {self.max_reject_fraction}")
        if self.rows_per_shard < 1 or self.chunk_rows < 1:
            raise ValueError("data.rows_per_shard and data.chunk_rows must be positive")
        self.splits = check_fractions(dict(self.splits))
