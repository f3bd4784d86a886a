from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitlatent.data import images
from tests.data.bad_inputs import (
    decompression_bomb_png, image_in_mode, save_jpeg, truncated_jpeg,
)

LIMIT = 64_000_000


@pytest.mark.parametrize("mode", ["L", "LA", "P", "P-transparent", "RGBA", "CMYK", "I;16", "1"])
def test_every_mode_becomes_rgb(tmp_path: Path, mode: str):
    path = image_in_mode(tmp_path / f"img.{'jpg' if mode == 'CMYK' else 'png'}", mode)
    decoded = images.decode_image_file(path, 16, LIMIT)
    assert decoded.status == "ok", decoded.detail
    assert decoded.pixels.shape == (16, 16, 3) and decoded.pixels.dtype == np.uint8
    assert (decoded.width, decoded.height) == (40, 48)
    assert decoded.pixels.std() > 0


def test_sixteen_bit_keeps_its_range(tmp_path: Path):
    array = np.tile(np.linspace(0, 65535, 32, dtype=np.uint16), (32, 1))
    Image.fromarray(array).save(tmp_path / "ramp.png")
    pixels = images.decode_image_file(tmp_path / "ramp.png", 32, LIMIT).pixels
    assert pixels[..., 0].min() <= 5 and pixels[..., 0].max() >= 250


def test_rgba_is_composited_over_white(tmp_path: Path):
    Image.new("RGBA", (8, 8), (255, 0, 0, 0)).save(tmp_path / "clear.png")
    pixels = images.decode_image_file(tmp_path / "clear.png", 8, LIMIT).pixels
    assert (pixels == 255).all()


def test_exif_orientation_is_applied(tmp_path: Path):
    # Stored 20 wide x 40 high, top red / bottom blue; orientation 6 shows it rotated 90°,
    # so after the transpose the colours sit left/right, not top/bottom.
    array = np.zeros((40, 20, 3), np.uint8)
    array[:20, :, 0] = 255
    array[20:, :, 2] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(array).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    pixels = images.decode_image_file(tmp_path / "rotated.jpg", 16, LIMIT).pixels.astype(int)
    left, right = pixels[:, :6].mean(axis=(0, 1)), pixels[:, -6:].mean(axis=(0, 1))
    assert abs(left[0] - right[0]) > 150 and abs(left[2] - right[2]) > 150
    top, bottom = pixels[:6].mean(axis=(0, 1)), pixels[-6:].mean(axis=(0, 1))
    assert abs(top[0] - bottom[0]) < 60


def test_centre_crop_keeps_the_middle(tmp_path: Path):
    array = np.zeros((20, 60, 3), np.uint8)
    array[:, 20:40] = 200  # the middle third
    Image.fromarray(array).save(tmp_path / "wide.png")
    pixels = images.decode_image_file(tmp_path / "wide.png", 8, LIMIT).pixels
    assert pixels.mean() > 180


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (lambda p: p.write_bytes(b"") or p, images.EMPTY_FILE),
        (truncated_jpeg, images.TRUNCATED_IMAGE),
        (lambda p: p.write_text("hello, I am text") or p, images.NOT_AN_IMAGE),
        (decompression_bomb_png, images.DECOMPRESSION_BOMB),
    ],
    ids=["zero-byte", "truncated", "text-as-jpg", "bomb"],
)
def test_bad_files_get_a_reason_not_an_exception(tmp_path: Path, make, status):
    path = tmp_path / "bad.jpg"
    make(path)
    decoded = images.decode_image_file(path, 16, LIMIT)
    assert decoded.status == status
    assert decoded.pixels is None


def test_missing_file(tmp_path: Path):
    assert images.decode_image_file(tmp_path / "nope.jpg", 16, LIMIT).status == images.MISSING_FILE


@pytest.mark.parametrize("relative", ["../../etc/passwd", "/etc/passwd", "a/../../outside.jpg", ""])
def test_paths_outside_the_root_are_refused(tmp_path: Path, relative: str):
    (tmp_path / "root").mkdir()
    save_jpeg(tmp_path / "outside.jpg")
    found = images.locate_image([tmp_path / "root"], relative)
    assert found.status == images.PATH_ESCAPES_ROOT and found.path is None


def test_symlink_escaping_the_root_is_refused(tmp_path: Path):
    root = tmp_path / "root"
    root.mkdir()
    save_jpeg(tmp_path / "outside.jpg")
    (root / "link.jpg").symlink_to(tmp_path / "outside.jpg")
    found = images.locate_image([root], "link.jpg")
    assert found.status == images.PATH_ESCAPES_ROOT and found.path is None
    assert "outside" in found.detail
    save_jpeg(root / "inside.jpg")
    assert images.locate_image([root], "inside.jpg").path == (root / "inside.jpg").resolve()


def test_roots_are_tried_in_order_and_each_bounds_its_own_paths(tmp_path: Path):
    """The captions folder first, its images/ folder second: ``images/a.jpg`` and ``a.jpg`` both
    name images/a.jpg, a file in the first root wins over the second, and a path is never taken
    outside the root it was taken against."""
    folder, beside = tmp_path, tmp_path / "images"
    beside.mkdir()
    save_jpeg(beside / "a.jpg")
    roots = [folder, beside]
    for written in ("images/a.jpg", "a.jpg", str((beside / "a.jpg").resolve())):
        found = images.locate_image(roots, written)
        assert found.status == "ok" and found.path == (beside / "a.jpg").resolve(), written
    assert images.locate_image(roots, "images/a.jpg").root == folder
    assert images.locate_image(roots, "a.jpg").root == beside
    save_jpeg(folder / "a.jpg", seed=1)
    assert images.locate_image(roots, "a.jpg").path == (folder / "a.jpg").resolve()
    missing = images.locate_image(roots, "nope.jpg")
    assert missing.status == images.MISSING_FILE
    assert str(folder / "nope.jpg") in missing.detail and str(beside / "nope.jpg") in missing.detail
    # ../a.jpg from images/ is the captions folder's a.jpg: outside images/, so refused there
    assert images.locate_image([beside], "../a.jpg").status == images.PATH_ESCAPES_ROOT


def test_a_folder_or_an_unreadable_name_is_a_reason(tmp_path: Path):
    (tmp_path / "dir.jpg").mkdir()
    assert images.decode_image_file(tmp_path / "dir.jpg", 16, LIMIT).status == images.UNREADABLE_FILE
    assert images.decode_image_file(tmp_path / ("x" * 300 + ".jpg"), 16, LIMIT).status in (
        images.MISSING_FILE, images.UNREADABLE_FILE)
    assert images.locate_image([tmp_path], "x" * 300 + ".jpg").status == images.MISSING_FILE
    assert images.locate_image([tmp_path], "a\x00b.jpg").status == images.PATH_ESCAPES_ROOT
