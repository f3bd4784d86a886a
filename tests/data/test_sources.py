import json
from pathlib import Path

import pytest

from bitlatent.data import sources
from tests.data.bad_inputs import save_jpeg


def test_csv_rows_invalid_utf8_and_malformed_rows_are_kept(tmp_path: Path):
    (tmp_path / "images").mkdir()
    save_jpeg(tmp_path / "images" / "a.jpg")
    payload = (
        b"image,caption\n"
        b"a.jpg,a dog on grass\n"
        b"a.jpg,\"a dog, running\"\n"
        b"a.jpg,caf\xe9 latin-1 bytes\n"
        b"a.jpg,too,many,fields\n"
        b"\n"
        b",no image\n"
    )
    (tmp_path / "captions.csv").write_bytes(payload)
    rows = list(sources.read_csv(tmp_path / "captions.csv"))
    assert [r.ordinal for r in rows] == [0, 1, 2, 3, 4]
    assert rows[0].caption == "a dog on grass" and rows[0].root == tmp_path / "images"
    assert rows[1].caption == "a dog, running" and not rows[1].problems
    assert rows[2].problems == [sources.INVALID_UTF8] and "\ufffd" in rows[2].caption
    assert rows[3].problems == [sources.MALFORMED_ROW]
    assert "missing_image_field" in rows[4].problems


def test_csv_without_header_is_a_clear_error(tmp_path: Path):
    (tmp_path / "c.csv").write_text("a.jpg,a caption\n")
    with pytest.raises(ValueError, match="header"):
        list(sources.read_csv(tmp_path / "c.csv"))


def test_jsonl(tmp_path: Path):
    lines = [json.dumps({"image": "a.jpg", "caption": "ok"}).encode(), b"{not json", b"[1, 2]",
             b'{"image": "b.jpg", "caption": "\xff\xfe"}', b"",
             json.dumps({"caption": "no image"}).encode()]
    (tmp_path / "pairs.jsonl").write_bytes(b"\n".join(lines))
    rows = list(sources.read_jsonl(tmp_path / "pairs.jsonl"))
    assert len(rows) == 5
    assert rows[0].caption == "ok" and not rows[0].problems
    assert rows[1].problems == [sources.MALFORMED_ROW]
    assert rows[2].problems == [sources.MALFORMED_ROW]
    assert sources.INVALID_UTF8 in rows[3].problems
    assert "missing_image_field" in rows[4].problems


def test_coco_folder_layout(tmp_path: Path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    save_jpeg(tmp_path / "val2017" / "000001.jpg")
    document = {
        "images": [{"id": 1, "file_name": "000001.jpg", "width": 48, "height": 40}],
        "annotations": [{"id": 10, "image_id": 1, "caption": "a cat"},
                        {"id": 11, "image_id": 1, "caption": "another cat"},
                        {"id": 12, "image_id": 99, "caption": "dangling image id"}],
    }
    (tmp_path / "annotations" / "captions_val2017.json").write_text(json.dumps(document))
    rows = list(sources.read_coco(tmp_path))
    assert [r.caption for r in rows] == ["a cat", "another cat", "dangling image id"]
    assert rows[0].image_id == rows[1].image_id == "000001.jpg"
    assert rows[0].root == tmp_path / "val2017"
    assert "missing_image_field" in rows[2].problems


def test_folder_with_sidecar_captions(tmp_path: Path):
    (tmp_path / "sub").mkdir()
    save_jpeg(tmp_path / "one.jpg")
    (tmp_path / "one.txt").write_text("first caption\n\nsecond caption\n")
    save_jpeg(tmp_path / "sub" / "two.jpg")
    (tmp_path / "sub" / "two.txt").write_text("nested")
    save_jpeg(tmp_path / "lonely.jpg")  # no caption file: one row, no caption
    rows = list(sources.read_folder(tmp_path))
    by_image = {}
    for r in rows:
        by_image.setdefault(r.image_id, []).append(r.caption)
    assert by_image == {"lonely.jpg": [None], "one.jpg": ["first caption", "second caption"],
                        "sub/two.jpg": ["nested"]}


@pytest.mark.skipif(not Path("../shared/datasets/flickr8k/captions.csv").is_file(),
                    reason="../shared/datasets is absent")
def test_flickr8k_layout_resolves_images():
    rows = sources.read_csv(Path("../shared/datasets/flickr8k/captions.csv"))
    first = next(rows)
    assert (first.root / first.image_path).is_file()


@pytest.mark.skipif(not Path("../shared/datasets/coco_mini").is_dir(), reason="../shared/datasets is absent")
def test_coco_mini_resolves_images():
    rows = list(sources.read_coco(Path("../shared/datasets/coco_mini")))
    assert len(rows) == 795
    assert all((r.root / r.image_path).is_file() for r in rows)
