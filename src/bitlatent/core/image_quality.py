"""Reconstruction metrics: PSNR over a whole set, mean per-image PSNR, SSIM.

Images are torch tensors (N, 3, H, W) with pixels in [0, 1] (``to_unit_images`` converts uint8
(N, H, W, 3) arrays). The headline PSNR is computed from the mean squared error over *all*
pixels of the set; the mean of per-image PSNRs is reported beside it, never instead (it is
higher, since easy images get large PSNRs). SSIM follows Wang et al. 2004: 11x11 gaussian
window (sigma 1.5), K1 = 0.01, K2 = 0.03, computed per channel on the valid region, averaged
over the map and the channels of an image, then over images.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "to_unit_images",
    "psnr_from_mse",
    "mse_per_image",
    "psnr",
    "psnr_per_image",
    "ssim_per_image",
    "ssim",
    "ReconstructionMeter",
]


def to_unit_images(images: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 (N, H, W, 3) array -> float32 (N, 3, H, W) in [0, 1]; float tensors pass through."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return images
    t = torch.from_numpy(np.array(images, copy=True)) if not isinstance(images, torch.Tensor) else images
    if t.dtype != torch.uint8 or t.ndim != 4 or t.shape[-1] != 3:
        raise ValueError(f"expected uint8 (N, H, W, 3), got {t.dtype} {tuple(t.shape)}")
    return t.permute(0, 3, 1, 2).float().div_(255.0)


def psnr_from_mse(mse: float, max_val: float = 1.0) -> float:
    """10 log10(max^2 / mse); +inf for a perfect reconstruction."""
    mse = float(mse)
    return math.inf if mse <= 0 else 10.0 * math.log10(max_val * max_val / mse)


def mse_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) x 2 -> (N,) mean squared error of each image, in float64."""
    diff = pred.detach().double() - target.detach().double()
    return diff.pow(2).flatten(1).mean(1)


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR of the whole set: from the MSE over all pixels of all images."""
    return psnr_from_mse(mse_per_image(pred, target).mean().item())


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR of each image."""
    return 10.0 * torch.log10(1.0 / mse_per_image(pred, target))


def _gaussian_window(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=dtype, device=device) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return g / g.sum()  # (size,)


def ssim_per_image(
    pred: torch.Tensor,
    target: torch.Tensor,
    window_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
    data_range: float = 1.0,
) -> torch.Tensor:
    """(N, c, H, W) x 2 -> (N,) SSIM of each image (float64)."""
    x, y = pred.detach().double(), target.detach().double()
    n, c, h, w = x.shape
    if h < window_size or w < window_size:
        raise ValueError(f"images ({h}x{w}) smaller than the SSIM window ({window_size})")
    g = _gaussian_window(window_size, sigma, x.dtype, x.device)
    gy = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)  # separable: vertical then horizontal, per channel
    gx = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def blur(t: torch.Tensor) -> torch.Tensor:  # (N, c, H, W) -> (N, c, H-ws+1, W-ws+1), valid
        return F.conv2d(F.conv2d(t, gy, groups=c), gx, groups=c)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(1)  # mean over channels and positions


def ssim(pred: torch.Tensor, target: torch.Tensor, **kwargs) -> float:
    """Mean over images of the per-image SSIM."""
    return ssim_per_image(pred, target, **kwargs).mean().item()


class ReconstructionMeter:
    """Accumulates metrics batch by batch, for sets too large to hold at once.

    ``update(pred, target)`` with (B, 3, H, W) in [0, 1]; ``compute()`` returns
    ``{"psnr", "psnr_mean_per_image", "mse", "ssim", "n_images"}``.
    """

    def __init__(self, with_ssim: bool = True):
        self.with_ssim = with_ssim
        self.mse: list[torch.Tensor] = []
        self.ssim: list[torch.Tensor] = []

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        pred, target = to_unit_images(pred), to_unit_images(target)
        self.mse.append(mse_per_image(pred, target).cpu())
        if self.with_ssim:
            self.ssim.append(ssim_per_image(pred, target).cpu())

    def compute(self) -> dict[str, float]:
        mse = torch.cat(self.mse)  # (N,)
        out = {
            "psnr": psnr_from_mse(mse.mean().item()),
            "psnr_mean_per_image": (10.0 * torch.log10(1.0 / mse)).mean().item(),
            "mse": mse.mean().item(),
            "n_images": int(mse.numel()),
        }
        if self.with_ssim:
            out["ssim"] = torch.cat(self.ssim).mean().item()
        return out
