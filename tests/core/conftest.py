import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bitlatent.core.decoder import DecoderConfig
from bitlatent.core.train import TrainConfig


def synthetic_images(n: int, size: int = 16, seed: int = 0) -> np.ndarray:
    """uint8 (n, size, size, 3): smooth colour fields with one rectangle each (no real data needed)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, 3, 3, generator=g)
    img = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=True).clamp(0, 1)
    for i in range(n):
        y, x = torch.randint(0, size - 4, (2,), generator=g).tolist()
        hh, ww = torch.randint(3, size // 2, (2,), generator=g).tolist()
        img[i, :, y : y + hh, x : x + ww] = torch.rand(3, 1, 1, generator=g)
    return (img.permute(0, 2, 3, 1) * 255).round().to(torch.uint8).numpy()


@pytest.fixture(scope="session")
def images() -> np.ndarray:
    return synthetic_images(40, seed=0)


@pytest.fixture
def tiny_decoder_config() -> DecoderConfig:
    return DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(32, 16, 16), blocks_per_stage=(1, 1, 1))


@pytest.fixture
def tiny_train_config() -> TrainConfig:
    return TrainConfig(
        device="cpu", epochs=12, batch_size=8, warmup_steps=5, progress=False, checkpoint_every=5,
        fit_steps=20, fit_batch_size=8, decoder_lr=5e-3, latent_lr=0.2,
    )  # fmt: skip
