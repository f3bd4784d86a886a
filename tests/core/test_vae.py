import numpy as np
import torch

from bitlatent.core.decoder import BinaryLatentDecoder
from bitlatent.core.train import TrainConfig
from bitlatent.core.vae import BinaryVAE, encode_images, train_vae


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
