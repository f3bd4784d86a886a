"""The attribute checker reads shapes back from pixels: right on renders, wrong on lies."""

from __future__ import annotations

import random
from operator import itemgetter

import numpy as np
import pytest
from PIL import Image

from bitlatent.data.shape_checker import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    attribute_accuracy,
    attribute_breakdown,
    check_attributes,
    detect_objects,
    shape_alpha,
)
from bitlatent.data.synthetic import SyntheticConfig, render_sample

VOCAB = {"shape": SHAPES, "colour": COLOURS, "size": SIZES, "position": POSITIONS}


def _renders(size: int, n: int, seed: int = 11, max_objects: int = 3) -> list[tuple[np.ndarray, list[dict]]]:
    cfg = SyntheticConfig(seed=seed, image_size=size, max_objects=max_objects)
    return [(p, a) for p, _, a in (render_sample(i, cfg) for i in range(n))]


@pytest.mark.parametrize("size", [32, 64])
def test_ground_truth_renders_score_at_least_99_percent(size: int) -> None:
    data = _renders(size, 500)
    accuracy = attribute_accuracy(np.stack([p for p, _ in data]), [a for _, a in data])
    assert accuracy >= 0.99


def test_every_object_is_found_even_when_the_grid_is_full() -> None:
    for pixels, attributes in _renders(32, 60, seed=3, max_objects=9):
        found = detect_objects(pixels)
        assert len(found) == len(attributes)
        by_cell = itemgetter("position")
        assert [{k: o[k] for k in VOCAB} for o in sorted(found, key=by_cell)] == sorted(attributes, key=by_cell)


def test_result_layout() -> None:
    pixels, attributes = _renders(32, 1, max_objects=1)[0]
    result = check_attributes(pixels, attributes)
    assert set(result) == {"objects", "detected", "correct", "total", "accuracy"}
    assert result["objects"] == [{"shape": True, "colour": True, "size": True, "position": True}]
    assert result["detected"] == attributes
    assert (result["correct"], result["total"], result["accuracy"]) == (4, 4, 1.0)


@pytest.mark.parametrize("size", [32, 64])
@pytest.mark.parametrize("attribute", ["colour", "shape", "size", "position"])
def test_a_wrong_claim_is_caught(size: int, attribute: str) -> None:
    rng = random.Random(0)
    flagged = claims = 0
    images, lies = [], []
    for pixels, attributes in _renders(size, 100):
        taken = {o["position"] for o in attributes}
        wrong = []
        for obj in attributes:
            options = [v for v in VOCAB[attribute] if v != obj[attribute]
                       and not (attribute == "position" and v in taken)]
            wrong.append({**obj, attribute: rng.choice(options)})
        result = check_attributes(pixels, wrong)
        flagged += sum(not o[attribute] for o in result["objects"])
        claims += len(wrong)
        images.append(pixels)
        lies.append(wrong)
    assert flagged / claims >= 0.97
    assert attribute_accuracy(images, lies) <= 0.8
    breakdown = attribute_breakdown(images, lies)  # the lie shows in its own attribute only
    assert breakdown[attribute] <= 0.03
    # a claim in the wrong cell pairs by colour with the nearest blob of that colour: where two
    # objects share a colour, that can be the other one, with its own shape and size
    floor = 0.9 if attribute == "position" else 0.97
    assert min(breakdown[k] for k in VOCAB if k != attribute) >= floor
    assert breakdown["objects_found"] >= 0.97
    assert breakdown["accuracy"] == attribute_accuracy(images, lies)


@pytest.mark.parametrize("size", [32, 64])
def test_blank_and_noise_images_score_low(size: int) -> None:
    data = _renders(size, 150)
    claims = [a for _, a in data]
    rng = np.random.default_rng(0)
    blank = np.full((len(data), size, size, 3), 128, np.uint8)
    noise = rng.integers(0, 256, (len(data), size, size, 3), dtype=np.uint8)
    smooth = np.stack([np.asarray(Image.fromarray(rng.integers(0, 256, (6, 6, 3), dtype=np.uint8))
                                  .resize((size, size), Image.Resampling.BICUBIC)) for _ in data])
    assert attribute_accuracy(blank, claims) == 0.0
    assert attribute_breakdown(blank, claims)["objects_found"] == 0.0
    assert attribute_accuracy(noise, claims) < 0.05
    assert attribute_accuracy(smooth, claims) < 0.3  # saturated blobs that are not objects on a ground


def test_the_pixels_decide_not_the_list() -> None:
    data = _renders(32, 200)
    images, claims = [p for p, _ in data], [a for _, a in data]
    assert attribute_accuracy(images, claims[1:] + claims[:1]) < 0.35


def test_a_hand_drawn_object_is_read() -> None:
    image = np.full((64, 64, 3), 90, np.uint8)
    alpha = shape_alpha("triangle", 18, 18)[..., None]
    image[44:62, 2:20] = (alpha * np.array([0, 200, 0]) + (1 - alpha) * 90).astype(np.uint8)
    claim = {"shape": "triangle", "colour": "green", "size": "large", "position": "bottom left"}
    assert check_attributes(image, [claim])["accuracy"] == 1.0
    assert check_attributes(image, [{**claim, "colour": "red"}])["objects"][0] == {
        "shape": True, "colour": False, "size": True, "position": True}
    assert check_attributes(image, [{**claim, "position": "top right"}])["objects"][0] == {
        "shape": True, "colour": True, "size": True, "position": False}


def test_float_images_in_unit_range_are_accepted() -> None:
    pixels, attributes = _renders(32, 1)[0]
    as_float = pixels.astype(np.float32) / 255.0
    assert check_attributes(as_float, attributes) == check_attributes(pixels, attributes)


def test_bad_inputs_raise() -> None:
    pixels, attributes = _renders(32, 1)[0]
    with pytest.raises(ValueError):
        attribute_accuracy(pixels[None], [attributes, attributes])
    with pytest.raises(ValueError):
        attribute_accuracy(pixels[None], [[]])
    with pytest.raises(ValueError):
        check_attributes(pixels[..., 0], attributes)
