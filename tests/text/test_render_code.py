"""The image code that reads the decoder's rendering (``image_code_input: render``)."""

import numpy as np
import pytest
import torch

from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
from bitlatent.text.model import TextToLatent, TextToLatentConfig, augment_images, load_text_to_latent, save_text_to_latent
from bitlatent.text.train import TextTrainConfig, evaluate_alignment, train_text_to_latent

from .test_train import TINY, random_data


def tiny_decoder(seed: int = 0) -> BinaryLatentDecoder:
    torch.manual_seed(seed)
    return BinaryLatentDecoder(DecoderConfig(image_size=12, latent_h=3, latent_w=3, bits_per_cell=2, widths=[8, 8, 8],
                                             blocks_per_stage=[1, 1, 1])).eval()  # fmt: skip


def render_config(**kw) -> TextToLatentConfig:
    return TextToLatentConfig(**{**dict(latent_h=3, latent_w=3, bits_per_cell=2, patch=1, image_code_input="render",
                                        render_width=4), **TINY, **kw})  # fmt: skip


def test_a_render_code_needs_the_decoder_and_keeps_a_frozen_copy():
    with pytest.raises(ValueError, match="needs the decoder"):
        TextToLatent(render_config())
    with pytest.raises(ValueError, match="image_code_input"):
        render_config(image_code_input="pixels")
    decoder = tiny_decoder()
    model = TextToLatent(render_config(), decoder).train()
    assert not model.renderer.training and not any(p.requires_grad for p in model.renderer.parameters())
    bits = torch.randint(0, 2, (5, 2, 3, 3))
    model.eval()
    with torch.no_grad():
        before = model.image_code_logits(bits)
        assert before.shape == (5, TINY["code_bits"])
        for p in decoder.parameters():  # the model holds a copy: changing the original changes nothing
            p.add_(1.0)
        assert torch.equal(model.image_code_logits(bits), before)


def test_a_render_code_trains_and_round_trips(tmp_path):
    data = random_data()
    config = TextTrainConfig(epochs=1, code_epochs=4, batch_size=8, lr=3e-3, code_lr=3e-3, warmup_steps=2,
                             progress=False, device="cpu")  # fmt: skip
    decoder = tiny_decoder()
    before = {k: v.clone() for k, v in decoder.state_dict().items()}
    model = train_text_to_latent(data, render_config(), config, renderer=decoder).model
    for name, value in model.renderer.state_dict().items():  # the renderer did not learn
        assert torch.equal(value, before[name]), name
    loaded = load_text_to_latent(save_text_to_latent(model, tmp_path / "m"))
    bits = torch.from_numpy(data.latent_bits)
    with torch.no_grad():
        np.testing.assert_array_equal(loaded.image_code_logits(bits).numpy(), model.image_code_logits(bits).numpy())
    assert evaluate_alignment(loaded, data) == evaluate_alignment(model, data)


def test_augmented_views_keep_the_size_and_vary():
    torch.manual_seed(0)
    image = torch.rand(6, 3, 16, 16)
    a, b = augment_images(image), augment_images(image)
    assert a.shape == image.shape and not torch.equal(a, b)
    assert (a - image).abs().mean() < 0.3  # a view of the same picture, not noise
