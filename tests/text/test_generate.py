import dataclasses

import numpy as np
import pytest
import torch

from bitlatent.generation import MODES, cell_uniforms
from bitlatent.text.encoder import TextFeatures
from bitlatent.text.generate import generate_from_features, generate_latents, image_codes, predict
from bitlatent.text.model import TextToLatent, TextToLatentConfig
from bitlatent.text.prior import sample_prior

TINY = TextToLatentConfig(latent_h=4, latent_w=4, bits_per_cell=3, width=32, heads=2, layers=1, text_layers=1,
                          code_bits=16, image_code_hidden=32, text_dim=384)


def tiny_model(seed: int = 0) -> TextToLatent:
    torch.manual_seed(seed)
    return TextToLatent(TINY).eval()


def random_features(n: int, seed: int = 0) -> TextFeatures:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(3, 9, n)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    return TextFeatures(rng.standard_normal((offsets[-1], 384)).astype(np.float16), offsets,
                        rng.standard_normal((n, 384)).astype(np.float16))


# ----------------------------------------------------------------------------- with a model


def test_predict_and_image_codes_shapes():
    model = tiny_model()
    feats = random_features(5)
    pred = predict(model, feats, batch_size=2)
    assert pred.bit_logits.shape == (5, 3, 4, 4) and pred.bit_logits.dtype == np.float32
    assert pred.code_bits.shape == (5, 16) and pred.code_bits.dtype == np.uint8
    assert np.array_equal(pred.bits, (pred.bit_logits >= 0).astype(np.uint8))
    # batching does not change the result
    assert np.allclose(predict(model, feats, batch_size=5).bit_logits, pred.bit_logits, atol=1e-5)
    lib = np.random.default_rng(0).integers(0, 2, (6, 3, 4, 4), dtype=np.uint8)
    codes = image_codes(model, lib, batch_size=4)
    assert codes.shape == (6, 16) and set(np.unique(codes)) <= {0, 1}
    from bitlatent.core.binary import pack_bits
    assert np.array_equal(image_codes(model, pack_bits(lib)), codes)  # packed latents work too


@pytest.mark.parametrize("mode", MODES)
def test_generate_modes_shapes_and_determinism(mode):
    model = tiny_model()
    feats = random_features(3)
    library = np.random.default_rng(1).integers(0, 2, (10, 3, 4, 4), dtype=np.uint8)
    kw = dict(samples=2, temperature=1.0, seed=3, strength=0.5, library=library)
    out = generate_from_features(model, feats, mode, **kw)
    assert out.bits.shape == (6, 3, 4, 4) and out.bits.dtype == np.uint8
    assert out.prompt_index.tolist() == [0, 0, 1, 1, 2, 2]
    again = generate_from_features(model, feats, mode, **kw)
    assert np.array_equal(out.bits, again.bits)
    if mode == "generate":
        assert out.library_index is None
    else:
        assert out.library_index.shape == (6,)
        assert out.library_index[0] != out.library_index[1]  # the two nearest, not twice the same
    if mode == "retrieve":
        assert np.array_equal(out.bits, library[out.library_index])


def test_refine_mode_endpoints():
    model = tiny_model()
    feats = random_features(2)
    library = np.random.default_rng(1).integers(0, 2, (10, 3, 4, 4), dtype=np.uint8)
    retrieved = generate_from_features(model, feats, "retrieve", library=library).bits
    generated = generate_from_features(model, feats, "generate").bits
    assert np.array_equal(generate_from_features(model, feats, "refine", strength=0.0, library=library).bits, retrieved)
    assert np.array_equal(generate_from_features(model, feats, "refine", strength=1.0, library=library).bits, generated)


def test_modes_need_what_they_need():
    model = tiny_model()
    with pytest.raises(ValueError, match="library"):
        generate_from_features(model, random_features(1), "retrieve")
    with pytest.raises(ValueError, match="unknown mode"):
        generate_from_features(model, random_features(1), "dream")


def test_generate_latents_from_prompts(encoder):
    model = tiny_model()
    prompts = ["a small red circle in the top left corner", "un chien couché sur le sol 🐕", "一只狗躺在地板上"]
    out = generate_latents(prompts, encoder, model, "generate", samples=2, temperature=0.5, seed=0)
    assert out.bits.shape == (6, 3, 4, 4)
    assert np.array_equal(out.bits, generate_latents(prompts, encoder, model, "generate", samples=2,
                                                     temperature=0.5, seed=0).bits)
    for bad in ["", "   \n\t", [], ["ok", " "]]:
        with pytest.raises(ValueError):
            generate_latents(bad, encoder, model)


def test_generate_draws_from_the_cell_prior_when_the_model_has_one():
    torch.manual_seed(0)
    model = TextToLatent(dataclasses.replace(TINY, prior_layers=1)).eval()
    feats = random_features(3)
    greedy = generate_from_features(model, feats, "generate", samples=2).bits  # (3 * 2, C, h, w)
    expected = sample_prior(model.prior, feats, temperature=0.0)  # (3, C, h, w)
    np.testing.assert_array_equal(greedy, np.repeat(expected, 2, axis=0))
    drawn = generate_from_features(model, feats, "generate", samples=2, temperature=1.0, seed=5).bits
    np.testing.assert_array_equal(drawn, generate_from_features(model, feats, "generate", samples=2,
                                                                temperature=1.0, seed=5).bits)
    assert not np.array_equal(drawn[0::2], drawn[1::2])  # the two samples of each prompt differ
    uniforms = cell_uniforms(5, 2, np.arange(3), 16)  # keys: the row numbers when none are given
    np.testing.assert_array_equal(drawn, sample_prior(model.prior, feats, 1.0, uniforms, samples=2))
    per_bit = (predict(model, feats).bit_logits >= 0).astype(np.uint8)
    assert not np.array_equal(greedy[0::2], per_bit)  # not the per-bit head's argmax


def test_refine_with_a_cell_prior_draws_the_unlikely_cells_again():
    torch.manual_seed(0)
    model = TextToLatent(dataclasses.replace(TINY, prior_layers=1)).eval()
    feats = random_features(3)
    library = np.random.default_rng(1).integers(0, 2, (10, 3, 4, 4), dtype=np.uint8)
    kw = dict(samples=2, temperature=1.0, seed=5, library=library)
    retrieved = generate_from_features(model, feats, "retrieve", **kw)
    np.testing.assert_array_equal(generate_from_features(model, feats, "refine", strength=0.0, **kw).bits, retrieved.bits)
    np.testing.assert_array_equal(generate_from_features(model, feats, "refine", strength=1.0, **kw).bits,
                                  generate_from_features(model, feats, "generate", **kw).bits)
    half = generate_from_features(model, feats, "refine", strength=0.5, **kw)
    np.testing.assert_array_equal(half.library_index, retrieved.library_index)
    cells_changed = (half.bits != retrieved.bits).any(1).reshape(6, -1).sum(1)  # (6,): of 16 cells each
    assert (cells_changed <= 8).all() and cells_changed.sum() > 0
    model_guidance = generate_from_features(model, feats, "refine", strength=0.5, **kw, guidance=None)
    np.testing.assert_array_equal(model_guidance.bits, half.bits)  # guidance None: the model's prior_guidance
