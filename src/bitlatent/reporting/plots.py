"""Figures people would rather look at than read: curves, grids, rate–distortion."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402


def training_curves(curves: dict[str, list[float]], title: str) -> Figure:
    """Loss and PSNR against steps, side by side."""
    figure, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    steps = curves.get("step", list(range(len(curves.get("loss", [])))))
    left.plot(steps, curves.get("loss", []), lw=1)
    left.set(xlabel="step", ylabel="loss", yscale="log", title="loss")
    right.plot(steps, curves.get("psnr", []), lw=1, color="tab:green")
    right.set(xlabel="step", ylabel="PSNR (dB)", title="batch PSNR")
    for axis in (left, right):
        axis.grid(alpha=0.3)
    figure.suptitle(title)
    figure.tight_layout()
    return figure


def image_grid(rows: dict[str, tuple[np.ndarray, np.ndarray]], scale: int = 2) -> Figure:
    """One pair of rows per split: originals above, reconstructions below (uint8 (n, H, W, 3))."""
    n = max(len(original) for original, _ in rows.values())
    size = next(iter(rows.values()))[0].shape[1]
    figure, axes = plt.subplots(2 * len(rows), 1, figsize=(n * size * scale / 100 + 1, 2 * len(rows) * size * scale / 100 + 0.6 * len(rows)))
    axes = np.atleast_1d(axes)
    for index, (split, (original, decoded)) in enumerate(rows.items()):
        for offset, (label, images) in enumerate((("original", original), ("decoded", decoded))):
            axis = axes[2 * index + offset]
            strip = np.concatenate(list(images), axis=1) if len(images) else np.zeros((size, size, 3), np.uint8)
            axis.imshow(strip, interpolation="nearest")
            axis.set_xticks([]), axis.set_yticks([])
            axis.set_ylabel(f"{split}\n{label}", rotation=0, ha="right", va="center", fontsize=8)
    figure.tight_layout()
    return figure


def rate_distortion(codec_curves: dict[str, list[dict]], ours: list[dict], title: str) -> Figure:
    """PSNR against bits per image: codec curves and our points."""
    figure, axis = plt.subplots(figsize=(6, 4.2))
    for codec, curve in codec_curves.items():
        axis.plot([p["bits_per_image"] for p in curve], [p["psnr"] for p in curve], "o-", ms=3, label=codec.upper())
    if ours:
        axis.plot([p["bits_per_image"] for p in ours], [p["psnr"] for p in ours], "*", ms=14,
                  color="crimson", label="bitlatent (held-out test)")
    axis.set(xlabel="bits per image", ylabel="PSNR (dB)", title=title, xscale="log")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    return figure


def captioned_grid(images: np.ndarray, captions: list[str], title: str, columns: int = 4) -> Figure:
    """Images (uint8 (n, H, W, 3)) with their (wrapped) captions underneath."""
    import textwrap

    rows = max(1, -(-len(images) // columns))
    figure, axes = plt.subplots(rows, columns, figsize=(3 * columns, 3.4 * rows))
    for axis in np.atleast_1d(axes).ravel():
        axis.axis("off")
    for axis, image, caption in zip(np.atleast_1d(axes).ravel(), images, captions):
        axis.imshow(image, interpolation="nearest")
        axis.set_title("\n".join(textwrap.wrap(caption, 32)[:3]), fontsize=7)
    figure.suptitle(title)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.4 / figure.get_figheight()))  # room for the title
    return figure
