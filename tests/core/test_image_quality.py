import math

import numpy as np
import pytest
import torch

from bitlatent.core.image_quality import (
    ReconstructionMeter,
    psnr,
    psnr_from_mse,
    psnr_per_image,
    ssim,
    ssim_per_image,
    to_unit_images,
)


def test_psnr_known_values():
    assert psnr_from_mse(0.01) == pytest.approx(20.0)
    assert psnr_from_mse(1e-4) == pytest.approx(40.0)
    assert psnr_from_mse(0.0) == math.inf
    target = torch.zeros(2, 3, 16, 16)
    pred = target.clone()
    pred[0] += 0.1  # mse 0.01 -> 20 dB
    pred[1] += 0.01  # mse 1e-4 -> 40 dB
    torch.testing.assert_close(psnr_per_image(pred, target), torch.tensor([20.0, 40.0], dtype=torch.float64))
    # whole-set PSNR: from the mean MSE (0.00505), not the mean of the PSNRs (30 dB)
    assert psnr(pred, target) == pytest.approx(10 * math.log10(1 / 0.00505))
    meter = ReconstructionMeter()
    meter.update(pred[:1], target[:1])
    meter.update(pred[1:], target[1:])
    out = meter.compute()
    assert out["psnr"] == pytest.approx(22.967, abs=1e-3)
    assert out["psnr_mean_per_image"] == pytest.approx(30.0)
    assert out["n_images"] == 2


def test_to_unit_images_from_uint8_nhwc():
    a = np.zeros((2, 4, 5, 3), np.uint8)
    a[..., 1] = 255
    t = to_unit_images(a)
    assert t.shape == (2, 3, 4, 5) and t.dtype == torch.float32
    assert t[:, 1].min() == 1.0 and t[:, 0].max() == 0.0


def test_ssim_identity_and_constant_images():
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    assert ssim(x, x) == pytest.approx(1.0)
    # constant images a and b: variances and covariance vanish, SSIM = (2ab + C1) / (a^2 + b^2 + C1)
    a, b, c1 = 0.2, 0.6, 0.01**2
    got = ssim_per_image(torch.full((1, 3, 16, 16), a, dtype=torch.float64), torch.full((1, 3, 16, 16), b, dtype=torch.float64))
    assert got.item() == pytest.approx((2 * a * b + c1) / (a * a + b * b + c1), rel=1e-9)


def _naive_ssim(x, y, ws=11, sigma=1.5):
    """Direct 2-D window loop (numpy, float64), one channel."""
    g = np.exp(-((np.arange(ws) - (ws - 1) / 2) ** 2) / (2 * sigma**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    vals = []
    for i in range(x.shape[0] - ws + 1):
        for j in range(x.shape[1] - ws + 1):
            px, py = x[i : i + ws, j : j + ws], y[i : i + ws, j : j + ws]
            mx, my = (win * px).sum(), (win * py).sum()
            vx, vy = (win * px * px).sum() - mx * mx, (win * py * py).sum() - my * my
            cxy = (win * px * py).sum() - mx * my
            vals.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))
    return float(np.mean(vals))


def test_ssim_matches_direct_computation():
    rng = np.random.default_rng(1)
    x = rng.random((2, 3, 14, 13))
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    got = ssim_per_image(torch.from_numpy(x), torch.from_numpy(y))
    for n in range(2):
        want = np.mean([_naive_ssim(x[n, c], y[n, c]) for c in range(3)])
        assert got[n].item() == pytest.approx(want, rel=1e-9)
    assert ssim(torch.from_numpy(x), torch.from_numpy(y)) == pytest.approx(got.mean().item())
    assert 0 < got.min() < 1
