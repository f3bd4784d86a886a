"""The rules ingested rows are validated against, free of Great Expectations: the reason codes a
rejected row gets, the columns a chunk must carry (``REQUIRED_COLUMNS``) and the thresholds of the
checks (``ValidationLimits``). ``expectations.py`` turns them into a GX suite; ``validation.py``
runs it chunk by chunk. Import the public names from ``bitlatent.data.validation``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from bitlatent.config import ConfigGroup

__all__ = ["IMAGE_OK", "IMAGE_STATUS_CODES", "REASON_CODES", "REQUIRED_COLUMNS", "ValidationLimits"]

# ----------------------------------------------------------------------------- reason codes

DUPLICATE_SAMPLE_ID = "duplicate_sample_id"
MISSING_SAMPLE_ID = "missing_sample_id"
MISSING_CAPTION = "missing_caption"
EMPTY_CAPTION = "empty_caption"
CAPTION_TOO_LONG = "caption_too_long"
IMAGE_TOO_SMALL = "image_too_small"
IMAGE_TOO_LARGE = "image_too_large"
CONSTANT_IMAGE = "constant_image"

# Problems found while reading a row or its image file (``sources.py``, ``images.py``).
MISSING_FILE = "missing_file"  # no file at the path under any image root
UNREADABLE_FILE = "unreadable_file"  # the file exists but cannot be opened (permissions, a folder, ...)
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED_IMAGE = "truncated_image"
DECOMPRESSION_BOMB = "decompression_bomb"
PATH_ESCAPES_ROOT = "path_escapes_root"  # ``..``, an absolute path or a symlink leading outside the root
INVALID_UTF8 = "invalid_utf8"
MALFORMED_ROW = "malformed_row"
MISSING_IMAGE_FIELD = "missing_image_field"

#: Problem codes the ingest may put in ``image_status``; a failing row's reason is its own status.
IMAGE_STATUS_CODES: tuple[str, ...] = (
    MISSING_FILE,
    UNREADABLE_FILE,
    EMPTY_FILE,
    NOT_AN_IMAGE,
    TRUNCATED_IMAGE,
    DECOMPRESSION_BOMB,
    PATH_ESCAPES_ROOT,
    INVALID_UTF8,
    MALFORMED_ROW,
    MISSING_IMAGE_FIELD,
)

REASON_CODES: tuple[str, ...] = (
    DUPLICATE_SAMPLE_ID,
    MISSING_SAMPLE_ID,
    MISSING_CAPTION,
    EMPTY_CAPTION,
    CAPTION_TOO_LONG,
    *IMAGE_STATUS_CODES,
    IMAGE_TOO_SMALL,
    IMAGE_TOO_LARGE,
    CONSTANT_IMAGE,
)

#: ``image_status`` of a row whose image was read and decoded.
IMAGE_OK = "ok"

#: The per-row facts a chunk must carry, one column each (``validation.ChunkValidator.validate``).
REQUIRED_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "caption",
    "caption_chars",
    "seen_before",
    "image_status",
    "width",
    "height",
    "pixel_std",
    "pixel_mean",
)


# ----------------------------------------------------------------------------- limits


@dataclass
class ValidationLimits(ConfigGroup):
    """Thresholds of the row checks (``data.validation``). All bounds are inclusive."""

    GROUP = "data.validation"

    #: Longest accepted caption, in characters (after stripping). Longer -> ``caption_too_long``.
    #: A caption of 0 characters is always rejected as ``empty_caption``.
    caption_max_chars: int = 300
    #: Smallest accepted source image side (width and height), in pixels. Below -> ``image_too_small``.
    min_image_side: int = 8
    #: Largest accepted source image side (width and height), in pixels. Above -> ``image_too_large``.
    max_image_side: int = 8192
    #: Smallest accepted std of the decoded, resized image in [0, 1]. Below -> ``constant_image``.
    min_pixel_std: float = 0.01

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("caption_max_chars", "min_image_side", "max_image_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
                raise ValueError(f"ValidationLimits.{name} must be an integer, got {value!r}")
            if not float(value).is_integer():
                raise ValueError(f"ValidationLimits.{name} must be an integer, got {value!r}")
            setattr(self, name, int(value))
        value = self.min_pixel_std
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
            raise ValueError(f"ValidationLimits.min_pixel_std must be a number, got {value!r}")
        self.min_pixel_std = float(value)
        if self.caption_max_chars < 1:
            raise ValueError(f"caption_max_chars must be >= 1, got {self.caption_max_chars}")
        if self.min_image_side < 1:
            raise ValueError(f"min_image_side must be >= 1, got {self.min_image_side}")
        if self.max_image_side < self.min_image_side:
            raise ValueError(
                f"max_image_side ({self.max_image_side}) must be >= min_image_side ({self.min_image_side})"
            )
        if not (math.isfinite(self.min_pixel_std) and self.min_pixel_std >= 0.0):
            raise ValueError(f"min_pixel_std must be a finite number >= 0, got {self.min_pixel_std}")
