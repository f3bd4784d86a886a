"""The ``bitlatent`` command, called through click's runner on a tiny untrained decoder."""

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from bitlatent.cli import main
from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, save_decoder
from bitlatent.data.latent_shards import load_latent_shard


@pytest.fixture
def decoder_dir(tmp_path: Path) -> Path:
    config = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(16, 8, 8),
                           blocks_per_stage=(1, 1, 1))
    return save_decoder(BinaryLatentDecoder(config), tmp_path / "decoder")


def test_encode_then_decode(tmp_path: Path, decoder_dir: Path):
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.jpg"):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(images / name)
    (images / "broken.jpg").write_bytes(b"not an image")

    runner = CliRunner()
    done = runner.invoke(main, ["encode", str(images), "-o", str(tmp_path / "z.npz"),
                                "--decoder", str(decoder_dir), "--steps", "5"])
    assert done.exit_code == 1, done.output  # one file could not be read: said, not hidden
    assert "broken.jpg: not_an_image" in done.output
    shard = load_latent_shard(tmp_path / "z.npz")
    assert shard.bits.shape == (2, 4 * 4 * 4 // 8) and len(shard.image_ids) == 2

    done = runner.invoke(main, ["decode", str(tmp_path / "z.npz"), "-o", str(tmp_path / "out"),
                                "--decoder", str(decoder_dir)])
    assert done.exit_code == 0, done.output
    pngs = sorted((tmp_path / "out").glob("*.png"))
    assert len(pngs) == 2 and Image.open(pngs[0]).size == (16, 16)


def test_encode_takes_the_fitting_rate_and_betas_and_rejects_bad_betas(tmp_path: Path, decoder_dir: Path):
    image = tmp_path / "a.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(image)
    runner = CliRunner()
    args = ["encode", str(image), "--decoder", str(decoder_dir), "--steps", "3"]
    slow = runner.invoke(main, [*args, "-o", str(tmp_path / "slow.npz"), "--lr", "0.001", "--betas", "0.5,0.9"])
    fast = runner.invoke(main, [*args, "-o", str(tmp_path / "fast.npz"), "--lr", "1.0", "--betas", "0.5,0.9"])
    assert slow.exit_code == 0 and fast.exit_code == 0, slow.output + fast.output
    # from near-zero logits, 3 steps of 0.001 flip no bit of the starting pattern; 3 steps of 1.0 do
    assert (load_latent_shard(tmp_path / "slow.npz").bits != load_latent_shard(tmp_path / "fast.npz").bits).any()
    bad = runner.invoke(main, [*args, "-o", str(tmp_path / "bad.npz"), "--betas", "0.9"])
    assert bad.exit_code == 2 and "two numbers in [0, 1)" in bad.output
    assert not (tmp_path / "bad.npz").exists()


def test_missing_decoder_names_the_command_that_makes_it(tmp_path: Path):
    done = CliRunner().invoke(main, ["decode", __file__, "-o", str(tmp_path), "--decoder", str(tmp_path / "none")])
    assert done.exit_code != 0
    assert "kedro run --pipelines decoder_pretraining" in done.output


def test_decode_refuses_a_file_that_is_not_a_latent_file(tmp_path: Path, decoder_dir: Path):
    np.savez(tmp_path / "other.npz", weights=np.zeros(3))
    done = CliRunner().invoke(main, ["decode", str(tmp_path / "other.npz"), "-o", str(tmp_path / "o"),
                                     "--decoder", str(decoder_dir)])
    assert done.exit_code != 0 and "not a bitlatent latent file" in done.output
