"""`bitlatent encode --compress` and `bitlatent decode` of its file of streams, through click's runner:
the same images as the raw latents give, and a clear error (no traceback) for a damaged file or a stream
of another model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from bitlatent.cli import main
from bitlatent.codec.container import is_stream_file, load_streams, save_streams
from bitlatent.codec.entropy_model import EntropyModel, save_entropy_model
from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, save_decoder
from tests.codec.conftest import tiny_entropy  # noqa: F401 - the session fixture


@pytest.fixture(scope="module")
def setup(tmp_path_factory, tiny_entropy):  # noqa: F811
    root = tmp_path_factory.mktemp("cli")
    config = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(16, 8, 8),
                           blocks_per_stage=(1, 1, 1))
    torch.manual_seed(0)
    decoder = save_decoder(BinaryLatentDecoder(config), root / "decoder")
    save_entropy_model(tiny_entropy.model, root / "entropy")
    images = root / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png", "c.png"):
        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(images / name)
    runner = CliRunner()
    common = ["--decoder", str(decoder), "--steps", "4", "--seed", "3"]
    plain = runner.invoke(main, ["encode", str(images), "-o", str(root / "raw.npz"), *common])
    packed = runner.invoke(main, ["encode", str(images), "-o", str(root / "streams.npz"), *common, "--compress",
                                  "--entropy-model", str(root / "entropy")])  # fmt: skip
    assert plain.exit_code == 0 and packed.exit_code == 0, plain.output + packed.output
    assert "wrote 3 streams of" in packed.output and "raw 64 bits" in packed.output
    return root, decoder


def decode(root: Path, decoder: Path, latents: Path, out: str, entropy: Path | None = None):
    entropy = entropy or root / "entropy"
    return CliRunner().invoke(main, ["decode", str(latents), "-o", str(root / out), "--decoder", str(decoder),
                                     "--entropy-model", str(entropy)])  # fmt: skip


def assert_refused(done, *phrases: str) -> None:
    assert done.exit_code == 1, done.output
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)
    for phrase in phrases:
        assert phrase in done.output, done.output


def rewrite_stream(source: Path, target: Path, index: int, change) -> None:
    """A valid file of streams whose stream ``index`` is ``change(stream)``."""
    got = load_streams(source)
    streams = list(got.streams)
    streams[index] = change(streams[index])
    save_streams(target, streams, got.image_ids, got.spec)


def test_compressed_latents_decode_to_the_same_images_as_raw_ones(setup):
    root, decoder = setup
    assert is_stream_file(root / "streams.npz") and not is_stream_file(root / "raw.npz")
    assert decode(root, decoder, root / "raw.npz", "raw_png").exit_code == 0
    done = decode(root, decoder, root / "streams.npz", "stream_png")
    assert done.exit_code == 0, done.output
    raw, streamed = sorted((root / "raw_png").glob("*.png")), sorted((root / "stream_png").glob("*.png"))
    assert [p.name for p in raw] == [p.name for p in streamed] and len(raw) == 3
    for a, b in zip(raw, streamed):
        assert np.array_equal(np.asarray(Image.open(a)), np.asarray(Image.open(b))), a.name


def test_a_truncated_or_corrupted_file_is_a_clear_error(setup):
    root, decoder = setup
    data = (root / "streams.npz").read_bytes()
    (root / "cut.npz").write_bytes(data[:-40])
    assert_refused(decode(root, decoder, root / "cut.npz", "o1"), "cut.npz")
    rewrite_stream(root / "streams.npz", root / "flipped.npz", 1, lambda s: s[:30] + bytes([s[30] ^ 4]) + s[31:])
    assert_refused(decode(root, decoder, root / "flipped.npz", "o2"), "stream 1", "corrupted stream")
    rewrite_stream(root / "streams.npz", root / "short.npz", 2, lambda s: s[:-3])
    assert_refused(decode(root, decoder, root / "short.npz", "o3"), "stream 2", "truncated stream")
    assert not any((root / name).exists() for name in ("o1", "o2", "o3")), "no image is written for a bad file"


def test_a_stream_of_another_entropy_model_is_refused_by_name(setup, tiny_entropy):  # noqa: F811
    root, decoder = setup
    torch.manual_seed(1)
    other = save_entropy_model(EntropyModel(tiny_entropy.model.config), root / "other")
    done = decode(root, decoder, root / "streams.npz", "o4", root / "other")
    assert_refused(done, "was encoded for model", f"this decoder has model {other}")


def test_compress_without_an_entropy_model_names_the_command_that_makes_it(setup, tmp_path):
    root, decoder = setup
    done = CliRunner().invoke(main, ["encode", str(root / "images"), "-o", str(tmp_path / "s.npz"), "--decoder",
                                     str(decoder), "--compress", "--entropy-model", str(tmp_path / "none")])
    assert_refused(done, "kedro run --pipelines compression", "--entropy-model")
    assert not (tmp_path / "s.npz").exists()
