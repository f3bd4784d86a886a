"""JPEG and WebP (Pillow) on the same images at matched bits per image, for the
rate–distortion comparison.

Whole encoded files are counted, headers included. Each codec gets its strongest Pillow
settings (JPEG ``optimize=True``, WebP ``method=6``). A codec's RD curve is a sweep over
quality: (mean bits per image, PSNR over the set); its PSNR at a bit budget is that curve
interpolated at the budget, and ``None`` below the smallest files it can write (JPEG cannot
go below ~2,900 bits for a 64×64 image).
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

CODECS = ("jpeg", "webp")
SWEEP_QUALITIES = (0, 1, 2, 3, 5, 8, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


def encode_decode(image: np.ndarray, codec: str, quality: int) -> tuple[int, np.ndarray]:
    """(bits of the encoded file, decoded uint8 (H, W, 3)) for one uint8 (H, W, 3) image."""
    buffer = io.BytesIO()
    picture = Image.fromarray(image)
    if codec == "jpeg":
        picture.save(buffer, format="JPEG", quality=max(quality, 1), optimize=True)
    elif codec == "webp":
        picture.save(buffer, format="WEBP", quality=quality, method=6)
    else:
        raise ValueError(f"unknown codec {codec!r}; expected one of {CODECS}")
    bits = len(buffer.getvalue()) * 8
    buffer.seek(0)
    return bits, np.asarray(Image.open(buffer).convert("RGB"))


def set_psnr(originals: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR from the mean squared error over the whole set, pixels in [0, 1]."""
    error = (originals.astype(np.float64) - decoded.astype(np.float64)) / 255.0
    mse = float(np.mean(error**2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def quality_sweep(images: np.ndarray, codec: str, qualities=SWEEP_QUALITIES) -> list[dict]:
    """The codec's RD curve on uint8 (N, H, W, 3) images: one point per quality."""
    if codec == "jpeg":
        qualities = sorted({max(q, 1) for q in qualities})
    curve = []
    for quality in qualities:
        results = [encode_decode(image, codec, quality) for image in images]
        curve.append({"quality": quality,
                      "bits_per_image": float(np.mean([bits for bits, _ in results])),
                      "psnr": set_psnr(images, np.stack([decoded for _, decoded in results]))})
    return curve


def psnr_at_bits(curve: list[dict], bits_per_image: float) -> float | None:
    """The curve's PSNR at ``bits_per_image`` (linear between sweep points), or ``None``
    when the codec cannot make files that small (or the budget lies past the sweep)."""
    points = sorted((p["bits_per_image"], p["psnr"]) for p in curve)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    if not xs or bits_per_image < xs[0] or bits_per_image > xs[-1]:
        return None
    return float(np.interp(bits_per_image, xs, ys))


def rate_distortion(images: np.ndarray, psnr: float, bits_per_image: int) -> dict:
    """The ``rate_distortion`` metrics of a held-out set: its PSNR (``bitlatent_test_psnr``) beside
    each codec's PSNR at the same bits per image and its smallest file, and every codec's curve
    (``curves``), for uint8 (N, H, W, 3) ``images``. What the ``evaluation`` pipeline reports for
    the test split and ``bitlatent evaluate`` for an external set."""
    rd: dict = {"bits_per_image": bits_per_image, "bitlatent_test_psnr": psnr}
    curves = {codec: quality_sweep(images, codec) for codec in CODECS}
    for codec, curve in curves.items():
        rd[f"{codec}_psnr_at_same_bits"] = psnr_at_bits(curve, bits_per_image)
        rd[f"{codec}_min_bits_per_image"] = min(p["bits_per_image"] for p in curve)
    rd["codec_images"] = int(len(images))
    rd["curves"] = curves
    return rd
