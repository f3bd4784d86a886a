"""The binary VAE that benchmarks/vae_comparison.py races against the decoder-only model."""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
from bitlatent.core.train import TrainConfig
from tests.core.conftest import synthetic_images

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from vae import BinaryVAE, encode_images, train_vae  # noqa: E402


@pytest.fixture
def images() -> np.ndarray:
    return synthetic_images(40, seed=0)


@pytest.fixture
def tiny_decoder_config() -> DecoderConfig:
    return DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(32, 16, 16), blocks_per_stage=(1, 1, 1))


def test_shapes_and_bits(tiny_decoder_config):
    model = BinaryVAE(tiny_decoder_config)
    x = torch.rand(2, 3, 16, 16)
    logits = model.encode_logits(x)
    assert logits.shape == (2, 4, 4, 4)  # (B, C, h, w), the decoder's latent grid
    z = model.encode(x)
    assert set(z.unique().tolist()) <= {-1.0, 1.0}
    assert model(x).shape == (2, 3, 16, 16)
    counts = model.num_parameters()
    assert counts["total"] == counts["encoder"] + counts["decoder"]


def test_same_decoder_and_straight_through(tiny_decoder_config):
    decoder = BinaryLatentDecoder(tiny_decoder_config)
    model = BinaryVAE(decoder)
    assert model.decoder is decoder
    x = torch.rand(2, 3, 16, 16)
    model(x, hardness=1.0).mean().backward()
    assert model.encoder.stem.weight.grad is not None  # gradient crosses the hard bits


def test_trains_a_little(images, tiny_decoder_config):
    model = BinaryVAE(tiny_decoder_config)
    cfg = TrainConfig(epochs=8, batch_size=8, warmup_steps=2, progress=False)
    _, before = encode_images(model, images)
    result = train_vae(images, model, cfg)
    _, after = encode_images(result.model, images)
    assert len(result.curves["step"]) == 8 * 5
    assert np.mean(after) < np.mean(before)
