"""Ingest on a crafted CSV holding every bad input the issue names, plus valid odd modes."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bitlatent.data.config import DataConfig
from bitlatent.data.ingest import check_accounting, ingest
from bitlatent.data.shards import ImageShards
from tests.data.bad_inputs import decompression_bomb_png, image_in_mode, save_jpeg, truncated_jpeg

# caption -> the reason its row must be rejected with (None: accepted)
EXPECTED = {
    "a good photo": None,
    "the same good photo, second caption": None,
    "grayscale": None, "rgba": None, "cmyk": None, "palette": None, "sixteen bit": None,
    "zero bytes": "empty_file",
    "truncated": "truncated_image",
    "text named jpg": "not_an_image",
    "bomb": "decompression_bomb",
    "missing": "missing_file",
    "escapes": "path_escapes_root",
    "absolute": "path_escapes_root",
    "   ": "empty_caption",
    "x" * 301: "caption_too_long",
    "constant": "constant_image",
}


@pytest.fixture
def messy_csv(tmp_path: Path) -> Path:
    root = tmp_path / "set"
    images = root / "images"
    images.mkdir(parents=True)
    save_jpeg(images / "good.jpg")
    for name, mode in [("gray.png", "L"), ("rgba.png", "RGBA"), ("cmyk.jpg", "CMYK"),
                       ("palette.png", "P"), ("deep.png", "I;16")]:
        image_in_mode(images / name, mode)
    (images / "zero.jpg").write_bytes(b"")
    truncated_jpeg(images / "truncated.jpg")
    (images / "text.jpg").write_text("not an image at all")
    decompression_bomb_png(images / "bomb.png")
    from PIL import Image
    Image.new("RGB", (32, 32), (90, 90, 90)).save(images / "flat.png")
    rows = [
        ("good.jpg", "a good photo"), ("good.jpg", "the same good photo, second caption"),
        ("gray.png", "grayscale"), ("rgba.png", "rgba"), ("cmyk.jpg", "cmyk"),
        ("palette.png", "palette"), ("deep.png", "sixteen bit"),
        ("zero.jpg", "zero bytes"), ("truncated.jpg", "truncated"), ("text.jpg", "text named jpg"),
        ("bomb.png", "bomb"), ("nope.jpg", "missing"), ("../../etc/passwd", "escapes"),
        ("/etc/passwd", "absolute"), ("good.jpg", "   "), ("good.jpg", "x" * 301),
        ("flat.png", "constant"),
        ("good.jpg", "a good photo"),  # duplicate row
    ]
    lines = ["image,caption"] + [f'{image},"{caption}"' for image, caption in rows]
    payload = ("\n".join(lines) + "\n").encode() + b"good.jpg,broken \xff utf-8\n"
    (root / "captions.csv").write_bytes(payload)
    return root / "captions.csv"


def _config(path: Path, tmp_path: Path, **overrides) -> DataConfig:
    return DataConfig(format="csv", path=str(path), image_size=16, max_pairs=None,
                      max_reject_fraction=1.0, rows_per_shard=3, chunk_rows=4,
                      scratch_dir=str(tmp_path / "scratch"), **overrides)


def test_every_bad_row_is_rejected_with_its_reason(messy_csv: Path, tmp_path: Path):
    result = ingest(_config(messy_csv, tmp_path), tmp_path / "staged", progress=False)
    pairs, rejected, report = result.pairs, result.rejected, result.report

    assert report["input_rows"] == 19
    assert len(pairs) + len(rejected) == 19
    assert (report["accepted_rows"], report["rejected_rows"]) == (len(pairs), len(rejected))

    reasons = dict(zip(rejected["caption"], rejected["reasons"]))
    for caption, reason in EXPECTED.items():
        stripped = caption.strip()
        if reason is None:
            assert stripped in set(pairs["caption"]), caption
        else:
            assert reasons.get(stripped) == reason, (caption, reasons.get(stripped))
    assert set(rejected["ordinal"]) >= {17, 18}  # the duplicate and the invalid UTF-8 row
    assert rejected.set_index("ordinal").loc[17, "reasons"] == "duplicate_sample_id"
    assert rejected.set_index("ordinal").loc[18, "reasons"] == "invalid_utf8"
    assert report["reasons"]["path_escapes_root"] == 2
    assert sum(report["reasons"].values()) >= len(rejected)


def test_shards_hold_each_accepted_image_once(messy_csv: Path, tmp_path: Path):
    result = ingest(_config(messy_csv, tmp_path), tmp_path / "staged", progress=False)
    shards = ImageShards(tmp_path / "staged")
    assert sum(shards.num_images(s) for s in shards.splits) == result.pairs["image_id"].nunique() == 6
    good = result.pairs[result.pairs["image_id"] == "good.jpg"]
    assert good[["split", "shard", "row"]].drop_duplicates().shape[0] == 1  # 2 captions, 1 image
    for row in result.pairs.itertuples():
        image = shards.shard(row.split, row.shard)[row.row]
        assert image.shape == (16, 16, 3) and image.dtype == np.uint8 and image.std() > 0
    assert isinstance(shards.shard(good.iloc[0]["split"], 0), np.memmap)


def test_splits_are_by_image_and_deterministic(tmp_path: Path):
    config = DataConfig(format="synthetic", image_size=32, max_pairs=300, rows_per_shard=64,
                        chunk_rows=100, scratch_dir=str(tmp_path / "s"))
    first = ingest(config, tmp_path / "a", progress=False).pairs
    second = ingest(config, tmp_path / "b", progress=False).pairs
    pd.testing.assert_frame_equal(first, second)
    assert first.groupby("image_id")["split"].nunique().max() == 1
    counts = first["split"].value_counts(normalize=True)
    assert 0.3 < counts["pretrain"] < 0.7 and counts["adapt"] > 0.2 and counts["test"] > 0.02
    assert np.array_equal(np.load(tmp_path / "a" / "pretrain" / "shard-00000.npy"),
                          np.load(tmp_path / "b" / "pretrain" / "shard-00000.npy"))


def test_reject_budget_names_counts_and_reasons(messy_csv: Path, tmp_path: Path):
    result = ingest(_config(messy_csv, tmp_path), tmp_path / "staged", progress=False)
    with pytest.raises(ValueError, match=r"of 19 rows rejected .*path_escapes_root: 2"):
        check_accounting(result.report, len(result.pairs), result.rejected, 0.05)
    check_accounting(result.report, len(result.pairs), result.rejected, 1.0)
    with pytest.raises(RuntimeError, match="accounting"):
        check_accounting(result.report, len(result.pairs) - 1, result.rejected, 1.0)


def test_unknown_parameters_and_bad_sizes_are_clear_errors():
    with pytest.raises(ValueError, match="unknown data parameter"):
        DataConfig.from_dict({"formatt": "csv"})
    with pytest.raises(ValueError, match="power of two"):
        DataConfig(image_size=48)
    with pytest.raises(ValueError, match="needs data.path"):
        DataConfig(format="csv")


def _ingest_rows(tmp_path: Path, caption_file: Path, data_format: str = "csv", **overrides):
    config = replace(_config(caption_file, tmp_path), format=data_format, **overrides)
    return ingest(config, tmp_path / f"staged-{data_format}-{config.chunk_rows}", progress=False)


def test_image_paths_relative_to_the_captions_folder_or_its_images_folder(tmp_path: Path):
    """``images/photo1.jpg`` (relative to the captions file) and ``photo2.jpg`` (the Flickr8k
    layout, in images/) both resolve; nothing leaves the folder; validation.json counts the rows
    read from each root. The same for JSONL."""
    root = tmp_path / "set"
    (root / "images").mkdir(parents=True)
    for i, name in enumerate(("photo1.jpg", "photo2.jpg", "photo3.jpg")):
        save_jpeg(root / "images" / name, seed=i)
    save_jpeg(tmp_path / "secret.jpg", seed=9)
    (root / "images" / "link.jpg").symlink_to(tmp_path / "secret.jpg")
    rows = [("images/photo1.jpg", "a first photo"), ("photo2.jpg", "a second photo"),
            ("images/photo3.jpg", "a third photo"), ("photo3.jpg", "the third named bare"),
            ("../secret.jpg", "dot dot"), ("images/link.jpg", "a link out"), ("link.jpg", "the link named bare"),
            (str(tmp_path / "secret.jpg"), "absolute outside"), (str(root / "images" / "photo1.jpg"), "absolute inside")]
    (root / "captions.csv").write_text("image,caption\n" + "".join(f"{i},{c}\n" for i, c in rows))
    (root / "captions.jsonl").write_text("".join(json.dumps({"image": i, "caption": c}) + "\n" for i, c in rows))
    for data_format in ("csv", "jsonl"):
        result = _ingest_rows(tmp_path, root / f"captions.{data_format}", data_format)
        accepted = dict(zip(result.pairs["caption"], result.pairs["image_id"]))
        assert set(accepted) == {"a first photo", "a second photo", "a third photo", "the third named bare",
                                 "absolute inside"}, data_format
        reasons = dict(zip(result.rejected["caption"], result.rejected["reasons"]))
        assert reasons == {c: "path_escapes_root" for c in ("dot dot", "a link out", "the link named bare",
                                                              "absolute outside")}, data_format
        assert result.report["image_roots"] == {str(root): 3, str(root / "images"): 2}, data_format


def test_image_root_when_set_is_the_only_root(tmp_path: Path):
    (tmp_path / "pictures").mkdir()
    save_jpeg(tmp_path / "pictures" / "a.jpg")
    save_jpeg(tmp_path / "b.jpg")
    (tmp_path / "c.csv").write_text("image,caption\na.jpg,in the root\nb.jpg,beside the captions\n")
    result = _ingest_rows(tmp_path, tmp_path / "c.csv", image_root=str(tmp_path / "pictures"))
    assert list(result.pairs["caption"]) == ["in the root"]
    assert list(result.rejected["reasons"]) == ["missing_file"]
    assert result.report["image_roots"] == {str(tmp_path / "pictures"): 1}


@pytest.mark.parametrize("chunk_rows", [1, 2, 100])
def test_a_problem_found_while_reading_is_kept_when_the_image_is_shared(tmp_path: Path, chunk_rows: int):
    """A row with invalid UTF-8 or the wrong number of fields is rejected with that reason even
    when an earlier row of the same chunk (or an earlier chunk) decoded the same image."""
    save_jpeg(tmp_path / "a.jpg")
    payload = (b"image,caption\n" b"a.jpg,a photo\n" b"a.jpg,caf\xe9 photo\n" b"a.jpg,one,field too many\n"
               b"a.jpg,another photo\n" b"a.jpg,\xff\n")
    (tmp_path / "c.csv").write_bytes(payload)
    result = _ingest_rows(tmp_path, tmp_path / "c.csv", chunk_rows=chunk_rows)
    assert list(result.pairs["caption"]) == ["a photo", "another photo"]
    assert dict(zip(result.rejected["ordinal"], result.rejected["reasons"])) == {
        1: "invalid_utf8", 2: "malformed_row", 4: "invalid_utf8"}
    assert not any("\ufffd" in c for c in result.pairs["caption"])


def test_every_read_problem_of_a_row_is_a_reason(tmp_path: Path):
    save_jpeg(tmp_path / "a.jpg")
    (tmp_path / "c.csv").write_bytes(b"image,caption\na.jpg,fine\na.jpg,caf\xe9,extra\n")
    result = _ingest_rows(tmp_path, tmp_path / "c.csv")
    assert list(result.rejected["reasons"]) == ["malformed_row;invalid_utf8"]
    assert list(result.rejected["caption"]) == ["caf\ufffd"]  # what the row held, printable
    assert result.report["reasons"] == {"malformed_row": 1, "invalid_utf8": 1}
