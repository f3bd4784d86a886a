"""Builders for the files the tests feed the sources: generated here, no binary fixtures."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def textured(size: tuple[int, int] = (48, 40), seed: int = 0) -> np.ndarray:
    """A non-constant uint8 (H, W, 3) image."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)


def save_jpeg(path: Path, size=(48, 40), seed: int = 0) -> Path:
    Image.fromarray(textured(size, seed)).save(path, format="JPEG", quality=90)
    return path


def truncated_jpeg(path: Path) -> Path:
    buffer = io.BytesIO()
    Image.fromarray(textured((64, 64), 3)).save(buffer, format="JPEG", quality=95)
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    return path


def decompression_bomb_png(path: Path, side: int = 100_000) -> Path:
    """A tiny PNG whose header declares ``side`` × ``side`` pixels (CRC fixed up)."""
    buffer = io.BytesIO()
    Image.new("L", (1, 1)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data.index(b"IHDR")
    data[ihdr + 4: ihdr + 12] = struct.pack(">II", side, side)
    crc = zlib.crc32(bytes(data[ihdr: ihdr + 17])) & 0xFFFFFFFF
    data[ihdr + 17: ihdr + 21] = struct.pack(">I", crc)
    path.write_bytes(bytes(data))
    return path


def image_in_mode(path: Path, mode: str) -> Path:
    """Save a textured image converted to ``mode`` (L, LA, P, RGBA, CMYK, I;16, 1)."""
    rgb = Image.fromarray(textured((40, 48), 5))
    if mode == "I;16":
        array = (np.asarray(rgb.convert("L"), dtype=np.uint16) * 257)
        image = Image.fromarray(array)  # uint16 -> mode I;16
        image.save(path, format="PNG")
        return path
    if mode == "P-transparent":
        image = rgb.convert("P")
        image.info["transparency"] = 0
        image.save(path, format="PNG", transparency=0)
        return path
    image = rgb.convert(mode)
    fmt = "JPEG" if mode == "CMYK" else "PNG"
    image.save(path, format=fmt)
    return path
