"""Safe image decoding: any file a user hands in becomes a square RGB uint8 array or a reason.

Nothing here raises on a bad file. ``decode_image_file`` returns a ``DecodedImage`` whose
``status`` is ``"ok"`` or one of the problem codes that validation turns into a rejection.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from bitlatent.data.rules import (  # noqa: F401  (the codes decoding gives, re-exported)
    DECOMPRESSION_BOMB, EMPTY_FILE, MISSING_FILE, MISSING_IMAGE_FIELD, NOT_AN_IMAGE, PATH_ESCAPES_ROOT,
    TRUNCATED_IMAGE, UNREADABLE_FILE,
)


@dataclass
class DecodedImage:
    """The outcome of decoding one file."""

    status: str  # "ok" or a problem code
    pixels: np.ndarray | None = None  # uint8 (size, size, 3) when ok
    width: float = float("nan")  # size of the source image, before crop and resize
    height: float = float("nan")
    detail: str = ""  # the underlying error, for the rejected table


@dataclass(frozen=True)
class ImageLocation:
    """Where a row's image path led: a file inside one of the roots, or a problem code."""

    status: str  # "ok", MISSING_FILE or PATH_ESCAPES_ROOT
    path: Path | None = None  # the resolved file when ok
    root: Path | None = None  # the root (as given, not resolved) the file was found under
    detail: str = ""


def locate_image(roots: Sequence[Path], written: str) -> ImageLocation:
    """Find the file an image path names, trying each root in order, never outside them.

    The path is taken against each root in turn (an absolute path is taken as it is); the first
    root under which it names an existing file wins. A candidate whose real location (``..``
    and symlinks resolved) is outside the root it was taken against is never opened. With no
    file found, the row is ``path_escapes_root`` when some candidate led outside its root, else
    ``missing_file``; the detail names every place looked at.
    """
    if not written or written.startswith(("~", "\\")) or "\x00" in written:
        return ImageLocation(PATH_ESCAPES_ROOT, detail=f"{written!r} is not a path inside the image root")
    escaped, looked = False, []
    for root in roots:
        try:
            base = root.resolve()
            candidate = (base / written).resolve()
            if not candidate.is_relative_to(base):
                escaped = True
                looked.append(f"{root / written} (outside {root})")
                continue
            if candidate.is_file():
                return ImageLocation("ok", candidate, root)
        except (OSError, RuntimeError, ValueError) as error:  # name too long, symlink loop, ...
            looked.append(f"{root / written} ({type(error).__name__})")
            continue
        looked.append(str(root / written))
    if not roots:
        return ImageLocation(MISSING_FILE, detail=f"{written}: no image root to look under")
    return ImageLocation(PATH_ESCAPES_ROOT if escaped else MISSING_FILE, detail="; ".join(looked))


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


def decode_image_file(path: Path, size: int, max_pixels: int) -> DecodedImage:
    """Decode ``path`` into a (size, size, 3) uint8 array, or say why not.

    Order of checks: missing, not a regular file or not readable, empty, declared dimensions
    (before any pixel is decoded, so a decompression bomb costs nothing), then the full decode
    (truncation shows up here).
    """
    try:
        if not path.exists():
            return DecodedImage(MISSING_FILE, detail=str(path))
        if not path.is_file():
            return DecodedImage(UNREADABLE_FILE, detail=f"{path}: not a regular file")
        if path.stat().st_size == 0:
            return DecodedImage(EMPTY_FILE, detail=str(path))
    except (OSError, ValueError) as error:  # a name too long, a NUL byte, ...
        return DecodedImage(UNREADABLE_FILE, detail=f"{type(error).__name__}: {error}")
    try:
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
    except PermissionError as error:
        return DecodedImage(UNREADABLE_FILE, detail=f"{type(error).__name__}: {error}")
    except Exception as error:  # noqa: BLE001 - a corrupt file can make a Pillow plugin raise anything
        return DecodedImage(TRUNCATED_IMAGE, detail=f"{type(error).__name__}: {error}")
    return DecodedImage("ok", pixels=pixels, width=float(width), height=float(height))


def pixel_stats(pixels: np.ndarray) -> tuple[float, float]:
    """(mean, std) of a uint8 image in [0, 1]."""
    scaled = pixels.astype(np.float32) / 255.0
    return float(scaled.mean()), float(scaled.std())
