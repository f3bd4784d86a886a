"""The ``bitlatent`` command, called through click's runner on a tiny untrained decoder."""

import json
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


def _no_traceback(done) -> None:
    """A command that failed said why: click's exit, not an exception escaping it."""
    assert done.exception is None or isinstance(done.exception, SystemExit), repr(done.exception)


def test_encode_lists_every_file_it_does_not_encode(tmp_path: Path, decoder_dir: Path):
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "a.png")
    (folder / "sub" / "empty.jpg").write_bytes(b"")
    (folder / "notes.txt").write_text("captions")
    (folder / "dir.png").mkdir()  # a folder with an image name: looked into, nothing in it
    done = CliRunner().invoke(main, ["encode", str(folder), str(tmp_path / "absent.jpg"), "-o", str(tmp_path / "z.npz"),
                                     "--decoder", str(decoder_dir), "--steps", "2"])
    _no_traceback(done)
    assert done.exit_code == 1, done.output
    assert f"skipped {folder / 'sub' / 'empty.jpg'}: empty_file" in done.output
    assert f"skipped {tmp_path / 'absent.jpg'}: missing_file" in done.output
    assert f"ignored {folder / 'notes.txt'}: not an image file name" in done.output
    assert "2 of 3 file(s) skipped" in done.output
    assert len(load_latent_shard(tmp_path / "z.npz").image_ids) == 1

    nothing = CliRunner().invoke(main, ["encode", str(folder / "notes.txt"), "-o", str(tmp_path / "n.npz"),
                                        "--decoder", str(decoder_dir)])
    _no_traceback(nothing)
    assert nothing.exit_code == 1 and "not_an_image" in nothing.output and "no image could be decoded" in nothing.output


def test_damaged_decoder_and_latent_files_are_messages_not_tracebacks(tmp_path: Path, decoder_dir: Path):
    broken = tmp_path / "broken-decoder"
    broken.mkdir()
    for file in decoder_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes()[:20])
    done = CliRunner().invoke(main, ["decode", __file__, "-o", str(tmp_path / "o"), "--decoder", str(broken)])
    _no_traceback(done)
    assert done.exit_code == 1 and "cannot load the decoder" in done.output
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not really a zip")
    done = CliRunner().invoke(main, ["decode", str(tmp_path / "bad.npz"), "-o", str(tmp_path / "o"),
                                     "--decoder", str(decoder_dir)])
    _no_traceback(done)
    assert done.exit_code == 1 and "not a readable latent file" in done.output


@pytest.fixture
def external_set(tmp_path: Path) -> Path:
    """A captions.csv whose paths are relative to it (images/photo1.jpg), plus bare names, and bad rows."""
    folder = tmp_path / "external"
    (folder / "images").mkdir(parents=True)
    rng = np.random.default_rng(2)
    for name in ("photo1.jpg", "photo2.jpg"):
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(folder / "images" / name)
    (folder / "images" / "zero.jpg").write_bytes(b"")
    (folder / "captions.csv").write_bytes(
        b"image,caption\nimages/photo1.jpg,a first photo\nphoto2.jpg,a second photo\n"
        b"images/photo1.jpg,caf\xe9\nimages/zero.jpg,an empty file\n../outside.jpg,out of the folder\n")
    return folder / "captions.csv"


def test_evaluate_lists_every_rejected_row_and_keeps_it_in_the_output(tmp_path: Path, decoder_dir: Path,
                                                                      external_set: Path):
    output = tmp_path / "metrics.json"
    done = CliRunner().invoke(main, ["evaluate", "--format", "csv", "--path", str(external_set), "-o", str(output),
                                     "--decoder", str(decoder_dir), "--text-model", str(tmp_path / "none"),
                                     "--steps", "2"])
    _no_traceback(done)
    assert done.exit_code == 0, done.output
    assert "rejected row 2 (images/photo1.jpg): invalid_utf8" in done.output
    assert "rejected row 3 (images/zero.jpg): empty_file" in done.output
    assert "rejected row 4 (../outside.jpg): path_escapes_root" in done.output
    dataset = json.loads(output.read_text())["dataset"]
    assert (dataset["input_rows"], dataset["accepted_rows"], dataset["rejected_rows"]) == (5, 2, 3)
    assert [r["ordinal"] for r in dataset["rejected"]] == [2, 3, 4]
    # photo1 and the empty file were found beside the captions, photo2 in images/
    assert dataset["image_roots"] == {str(external_set.parent): 2, str(external_set.parent / "images"): 1}


def test_evaluate_on_unreadable_or_fully_rejected_sets_says_why(tmp_path: Path, decoder_dir: Path, external_set: Path):
    args = ["--decoder", str(decoder_dir), "--text-model", str(tmp_path / "none"), "--steps", "2",
            "-o", str(tmp_path / "m.json")]
    for path, data_format, message in [(tmp_path / "absent.csv", "csv", "does not exist"),
                                       (external_set.parent, "csv", "cannot read"),
                                       (external_set, "coco", "cannot read")]:
        done = CliRunner().invoke(main, ["evaluate", "--format", data_format, "--path", str(path), *args])
        _no_traceback(done)
        assert done.exit_code == 1 and message in done.output, (path, done.output)
    bad = tmp_path / "bad.csv"
    bad.write_text("image,caption\nnope.jpg,missing\n")
    done = CliRunner().invoke(main, ["evaluate", "--format", "csv", "--path", str(bad), *args])
    _no_traceback(done)
    assert done.exit_code == 1 and "rejected row 0 (nope.jpg): missing_file" in done.output
    assert "no valid image" in done.output and not (tmp_path / "m.json").exists()
