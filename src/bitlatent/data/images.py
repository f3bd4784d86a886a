"""Safe image decoding: any file a user hands in becomes a square RGB uint8 array or a reason.

Nothing here raises on a bad file. ``decode_image_file`` returns a ``DecodedImage`` whose
``status`` is ``"ok"`` or one of the problem codes that validation turns into a rejection.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Problem codes, shared with validation (each becomes a rejection reason).
MISSING_FILE = "missing_file"
EMPTY_FILE = "empty_file"
NOT_AN_IMAGE = "not_an_image"
TRUNCATED_IMAGE = "truncated_image"
DECOMPRESSION_BOMB = "decompression_bomb"
PATH_ESCAPES_ROOT = "path_escapes_root"
MISSING_IMAGE_FIELD = "missing_image_field"


@dataclass
class DecodedImage:
    """The outcome of decoding one file."""

    status: str  # "ok" or a problem code
    pixels: np.ndarray | None = None  # uint8 (size, size, 3) when ok
    width: float = float("nan")  # size of the source image, before crop and resize
    height: float = float("nan")
    detail: str = ""  # the underlying error, for the rejected table


def resolve_inside(root: Path, relative: str) -> Path | None:
    """``root / relative`` if it stays inside ``root`` (symlinks resolved), else ``None``.

    Absolute paths are refused outright: a dataset's image paths are relative to its root.
    """
    if not relative or os.path.isabs(relative) or relative.startswith(("~", "\\")):
        return None
    root = root.resolve()
    candidate = (root / relative).resolve()
    return candidate if candidate.is_relative_to(root) else None


def to_rgb(image: Image.Image, background: tuple[int, int, int] = (255, 255, 255)) -> Image.Image:
    """Convert any Pillow mode to RGB; transparency is composited over ``background``."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(image, dtype=np.float64)
        if image.mode.startswith("I;16"):
            array = array / 257.0  # 0..65535 -> 0..255
        else:
            low, high = float(array.min()), float(array.max())
            array = (array - low) / (high - low) * 255.0 if high > low else np.zeros_like(array)
        image = Image.fromarray(np.clip(np.rint(array), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P":
        image = image.convert("RGBA" if "transparency" in image.info else "RGB")
    if image.mode in ("LA", "La", "PA", "RGBa"):
        image = image.convert("RGBA")
    if image.mode == "RGBA":
        canvas = Image.new("RGB", image.size, background)
        canvas.paste(image, mask=image.getchannel("A"))
        return canvas
    return image.convert("RGB") if image.mode != "RGB" else image


def square_resize(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to ``size`` × ``size`` with antialiasing."""
    fitted = ImageOps.fit(image, (size, size), method=Image.Resampling.LANCZOS)
    return np.asarray(fitted, dtype=np.uint8).copy()  # (size, size, 3)


def decode_image_file(path: Path | None, size: int, max_pixels: int) -> DecodedImage:
    """Decode ``path`` into a (size, size, 3) uint8 array, or say why not.

    Order of checks: missing, empty, declared dimensions (before any pixel is decoded, so a
    decompression bomb costs nothing), then the full decode (truncation shows up here).
    """
    if path is None:
        return DecodedImage(PATH_ESCAPES_ROOT)
    try:
        if not path.is_file():
            return DecodedImage(MISSING_FILE, detail=str(path))
        if path.stat().st_size == 0:
            return DecodedImage(EMPTY_FILE, detail=str(path))
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    return DecodedImage(
                        DECOMPRESSION_BOMB, width=width, height=height,
                        detail=f"{width}x{height} pixels declared, limit {max_pixels}",
                    )
                image.draft("RGB", (size * 2, size * 2))  # JPEG: decode at reduced scale
                image.load()
                image = ImageOps.exif_transpose(image)
                pixels = square_resize(to_rgb(image), size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        return DecodedImage(DECOMPRESSION_BOMB, detail=str(error))
    except UnidentifiedImageError as error:
        return DecodedImage(NOT_AN_IMAGE, detail=str(error))
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        return DecodedImage(TRUNCATED_IMAGE, detail=f"{type(error).__name__}: {error}")
    return DecodedImage("ok", pixels=pixels, width=float(width), height=float(height))


def pixel_stats(pixels: np.ndarray) -> tuple[float, float]:
    """(mean, std) of a uint8 image in [0, 1]."""
    scaled = pixels.astype(np.float32) / 255.0
    return float(scaled.mean()), float(scaled.std())
