"""The record every data source yields, before decoding and validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class RawPair:
    """One (image, caption) row as a source read it.

    Exactly one of ``image_path`` and ``pixels`` is set when the row is usable.
    A source never raises on a bad row: it yields the row with ``problems`` filled
    in, so that validation can reject it with a reason and nothing is lost.
    """

    ordinal: int  # 0-based position of the row in the input, for the rejected table
    image_id: str  # stable id of the image; all captions of one image share it
    caption: str | None
    image_path: str | None = None  # as written in the input, relative to one of ``roots``
    roots: tuple[Path, ...] = ()  # folders the path is taken against, in order; it must stay inside one
    pixels: np.ndarray | None = None  # uint8 (H, W, 3), for sources that render
    attributes: list[dict[str, Any]] | None = None  # ground truth, synthetic only
    forced_split: str | None = None  # e.g. held-out attribute combinations -> "test"
    problems: list[str] = field(default_factory=list)  # reasons found while reading

    @property
    def root(self) -> Path | None:
        """The first of ``roots`` (``None`` for rendered rows)."""
        return self.roots[0] if self.roots else None
