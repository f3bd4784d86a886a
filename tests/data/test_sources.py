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
    assert rows[0].caption == "a dog on grass" and rows[0].roots == (tmp_path, tmp_path / "images")
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


def test_a_byte_order_mark_a_huge_field_and_stray_bytes_are_rows_not_crashes(tmp_path: Path):
    payload = (b"\xef\xbb\xbfimage,caption\n" + b"a.jpg,fine\n" + b'a.jpg,"' + b"y" * 200_000 + b'"\n'
               + b"b.jpg,\x00nul\n" + b"c.jpg,last\n")
    (tmp_path / "c.csv").write_bytes(payload)
    rows = list(sources.read_csv(tmp_path / "c.csv"))
    assert [r.ordinal for r in rows] == [0, 1, 2, 3]
    assert rows[0].caption == "fine" and rows[0].roots == (tmp_path,)
    assert rows[1].problems == [sources.MALFORMED_ROW]  # over the csv module's field limit
    assert rows[3].caption == "last" and not rows[3].problems


def test_jsonl_fields_of_the_wrong_type_and_lone_surrogates(tmp_path: Path):
    lines = [b'{"image": "a.jpg", "caption": {"nested": 1}}', b'{"image": "a.jpg", "caption": "bad \\ud800"}',
             b"[" * 100_000, b'{"image": "a.jpg", "caption": "ok", "note": "\xff"}']
    (tmp_path / "p.jsonl").write_bytes(b"\n".join(lines))
    rows = list(sources.read_jsonl(tmp_path / "p.jsonl"))
    assert rows[0].problems == [sources.MALFORMED_ROW] and rows[0].caption is None
    assert rows[1].problems == [sources.INVALID_UTF8] and rows[1].caption == "bad \ufffd"
    assert rows[2].problems == [sources.MALFORMED_ROW]
    assert rows[3].problems == [sources.INVALID_UTF8]  # bad bytes anywhere on the line


def test_coco_file_that_is_not_an_object_is_a_clear_error(tmp_path: Path):
    (tmp_path / "captions.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        list(sources.read_coco(tmp_path / "captions.json"))
    (tmp_path / "captions.json").write_text(json.dumps({"images": [{"id": [1]}], "annotations": [7, {"image_id": [1]}]}))
    rows = list(sources.read_coco(tmp_path / "captions.json"))
    assert rows[0].problems == [sources.MALFORMED_ROW] and "missing_image_field" in rows[1].problems


@pytest.mark.skipif(not Path("../shared/datasets/coco_mini").is_dir(), reason="../shared/datasets is absent")
def test_coco_mini_resolves_images():
    rows = list(sources.read_coco(Path("../shared/datasets/coco_mini")))
    assert len(rows) == 795
    assert all((r.root / r.image_path).is_file() for r in rows)
