"""Reconstruction quality of decoded images against their originals: what the ``evaluation``
pipeline reports per split and ``bitlatent evaluate`` reports for an external set."""

from __future__ import annotations

import numpy as np

from bitlatent.core.image_quality import psnr_per_image, ssim_per_image, to_unit_images
from bitlatent.evaluation.codecs import set_psnr


def reconstruction_scores(originals: np.ndarray, decoded: np.ndarray) -> dict[str, float]:
    """PSNR from the set's MSE (the headline), mean per-image PSNR beside it, and SSIM, for uint8
    (N, H, W, 3) originals and their decoded images."""
    target, output = to_unit_images(originals), to_unit_images(decoded)
    return {"psnr": set_psnr(originals, decoded),
            "psnr_mean_per_image": float(psnr_per_image(output, target).mean()),
            "ssim": float(ssim_per_image(output, target).mean()),
            "images": int(len(originals))}
