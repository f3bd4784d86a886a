"""The fitting recipe a decoder carries (``core.decoder.FitRecipe``): saved, loaded, used by
``bitlatent encode`` unless overridden, and absent from older decoders (base settings, said)."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bitlatent.cli import main
from bitlatent.core.decoder import (
    CONFIG_FILE, BinaryLatentDecoder, DecoderConfig, FitRecipe, attach_fit_recipe, choose_fit, load_decoder,
    save_decoder, saved_fit_recipe,
)
from bitlatent.core.train import TrainConfig, fit_latents
from bitlatent.data.latent_shards import load_latent_shard

TINY = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(16, 8, 8),
                     blocks_per_stage=(1, 1, 1))
# every field away from TrainConfig's defaults
RECIPE = FitRecipe(seed=3, steps=4, chunk_size=2, lr=0.3, min_lr_ratio=0.2, betas=(0.9, 0.99), init_std=0.05,
                   logit_clip=0.8, rate_weight=0.01, cpu_bf16=False, amp=False)


def test_every_recipe_field_differs_from_the_base_and_maps_to_train_config():
    base = FitRecipe()
    assert all(getattr(RECIPE, name) != getattr(base, name) for name in FitRecipe.TRAIN_FIELDS if name != "cpu_bf16")
    assert FitRecipe.from_train(RECIPE.train_config()) == RECIPE
    assert FitRecipe.from_train(TrainConfig()) == base


def test_recipe_round_trips_through_decoder_json(tmp_path: Path):
    save_decoder(attach_fit_recipe(BinaryLatentDecoder(TINY), RECIPE), tmp_path / "dec")
    assert json.loads((tmp_path / "dec" / CONFIG_FILE).read_text())["fit_recipe"]["lr"] == 0.3
    assert saved_fit_recipe(load_decoder(tmp_path / "dec")) == RECIPE


@pytest.fixture
def images(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_encode_fits_with_the_decoders_recipe_and_the_command_line_overrides_it(tmp_path: Path, images: Path):
    decoder = attach_fit_recipe(BinaryLatentDecoder(TINY), RECIPE)
    save_decoder(decoder, tmp_path / "dec")
    runner = CliRunner()
    done = runner.invoke(main, ["encode", str(images), "-o", str(tmp_path / "z.npz"), "--decoder", str(tmp_path / "dec")])
    assert done.exit_code == 0, done.output
    assert "lr 0.3 (decoder)" in done.output and "betas 0.9,0.99 (decoder)" in done.output
    assert "chunk_size 2 (decoder)" in done.output and "steps 4 (decoder)" in done.output
    pixels = np.stack([np.asarray(Image.open(images / n)) for n in ("a.png", "b.png", "c.png")])
    expected = fit_latents(load_decoder(tmp_path / "dec"), pixels, RECIPE.train_config()).packed
    base = fit_latents(load_decoder(tmp_path / "dec"), pixels, TrainConfig(fit_steps=RECIPE.steps)).packed
    got = load_latent_shard(tmp_path / "z.npz").bits
    np.testing.assert_array_equal(got, expected)
    assert (got != base).any()  # the recipe made a difference the test can see

    done = runner.invoke(main, ["encode", str(images), "-o", str(tmp_path / "o.npz"), "--decoder",
                                str(tmp_path / "dec"), "--lr", "1.0", "--steps", "2"])
    assert done.exit_code == 0, done.output
    assert "lr 1.0 (command line)" in done.output and "steps 2 (command line)" in done.output
    assert "betas 0.9,0.99 (decoder)" in done.output
    overridden = fit_latents(load_decoder(tmp_path / "dec"), pixels,
                             FitRecipe(**{**RECIPE.to_dict(), "lr": 1.0, "steps": 2}).train_config()).packed
    np.testing.assert_array_equal(load_latent_shard(tmp_path / "o.npz").bits, overridden)


def test_a_decoder_saved_without_a_recipe_loads_and_fits_with_the_base_settings_said(tmp_path: Path, images: Path):
    save_decoder(BinaryLatentDecoder(TINY), tmp_path / "old")
    meta_path = tmp_path / "old" / CONFIG_FILE
    meta = json.loads(meta_path.read_text())
    del meta["fit_recipe"]
    meta_path.write_text(json.dumps({**meta, "version": 1}))  # as written before recipes
    old = load_decoder(tmp_path / "old")
    assert saved_fit_recipe(old) is None
    chosen = choose_fit(old)
    assert chosen.train == TrainConfig() and set(chosen.sources.values()) == {"base"}
    assert "without a fitting recipe" in chosen.note
    done = CliRunner().invoke(main, ["encode", str(images), "-o", str(tmp_path / "z.npz"), "--decoder",
                                     str(tmp_path / "old"), "--steps", "2"])
    assert done.exit_code == 0, done.output
    assert "note: this decoder was saved without a fitting recipe" in done.output and "lr 1.0 (base)" in done.output

    meta_path.write_text(json.dumps({**meta, "version": 9}))
    with pytest.raises(ValueError, match=r"version 9.*`kedro run --pipeline decoder_pretraining`"):
        load_decoder(tmp_path / "old")
