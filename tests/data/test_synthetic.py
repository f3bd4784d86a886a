"""The synthetic captioned-shapes source: config, rendering, captions, streaming, splits."""

from __future__ import annotations

import inspect
import itertools
import json

import numpy as np
import pytest

from bitlatent.data.records import RawPair
from bitlatent.data.synthetic import (
    COLOURS,
    POSITIONS,
    SHAPES,
    SIZES,
    SyntheticConfig,
    is_heldout,
    iter_synthetic_pairs,
    parse_caption,
    render_sample,
    reword,
)


def test_config_defaults_and_from_dict() -> None:
    cfg = SyntheticConfig()
    assert (cfg.num_pairs, cfg.seed, cfg.image_size, cfg.max_objects) == (2000, 0, 64, 2)
    assert cfg.heldout_combinations  # some combination is held out by default
    built = SyntheticConfig.from_dict({"num_pairs": 10, "seed": 3, "image_size": 32,
                                       "heldout_combinations": ("red circle",)})
    assert built == SyntheticConfig(num_pairs=10, seed=3, image_size=32, heldout_combinations=["red circle"])
    assert SyntheticConfig.from_dict({}) == SyntheticConfig()


@pytest.mark.parametrize("bad", [
    {"num_pairs": 5, "sede": 1},  # typo
    {"image_size": 48},
    {"image_size": 512},
    {"max_objects": 0},
    {"max_objects": 10},
    {"seed": -1},
    {"heldout_combinations": ["green hexagon"]},
    {"heldout_combinations": ["triangle green"]},
])
def test_config_rejects_bad_values(bad: dict) -> None:
    with pytest.raises(ValueError):
        SyntheticConfig.from_dict(bad)


def test_unknown_key_names_the_group_and_the_known_keys() -> None:
    with pytest.raises(ValueError, match=r"unknown data.synthetic parameter\(s\) \['sede'\]; known: .*'seed'"):
        SyntheticConfig.from_dict({"sede": 1})
    assert SyntheticConfig.from_dict({"heldout_combinations": None}).heldout_combinations == []


@pytest.mark.parametrize("size", [32, 64, 128, 256])
def test_render_sample_shapes_and_attributes(size: int) -> None:
    cfg = SyntheticConfig(image_size=size, max_objects=4)
    counts = set()
    for index in range(40):
        pixels, caption, attributes = render_sample(index, cfg)
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
        assert isinstance(caption, str) and caption
        assert 1 <= len(attributes) <= 4
        counts.add(len(attributes))
        json.dumps(attributes)  # plain, serialisable
        for obj in attributes:
            assert set(obj) == {"shape", "colour", "size", "position"}
            assert obj["shape"] in SHAPES and obj["colour"] in COLOURS
            assert obj["size"] in SIZES and obj["position"] in POSITIONS
        positions = [o["position"] for o in attributes]
        assert len(set(positions)) == len(positions)  # one object per cell
    assert counts == {1, 2, 3, 4}


def test_backgrounds_are_textured_and_dull() -> None:
    cfg = SyntheticConfig(image_size=32, max_objects=1)
    for index in range(100):
        pixels, _, attributes = render_sample(index, cfg)
        row, col = divmod(POSITIONS.index(attributes[0]["position"]), 3)
        free = (row + 1) % 3, (col + 1) % 3  # a cell with no object in it
        patch = pixels[10 * free[0]:10 * free[0] + 10, 10 * free[1]:10 * free[1] + 10] / 255.0
        chroma = patch.max(-1) - patch.min(-1)
        assert chroma.max() <= 0.16  # desaturated, so object colours stand out
        assert patch.mean(-1).std() > 0.005  # not flat
    samples = [render_sample(i, cfg)[0] for i in range(10)]
    assert len({s.tobytes() for s in samples}) == 10


def test_same_seed_and_index_give_identical_samples() -> None:
    a = SyntheticConfig(seed=7, image_size=32, max_objects=3)
    b = SyntheticConfig(seed=7, image_size=32, max_objects=3)
    first = [render_sample(i, a) for i in (0, 1, 99, 123_456)]
    render_sample(5, SyntheticConfig(seed=8, image_size=64))  # unrelated work in between
    again = [render_sample(i, b) for i in (0, 1, 99, 123_456)]
    for (p1, c1, a1), (p2, c2, a2) in zip(first, again):
        assert p1.tobytes() == p2.tobytes() and c1 == c2 and a1 == a2


def test_different_seeds_and_indices_differ() -> None:
    s0, s1 = SyntheticConfig(seed=0, image_size=32), SyntheticConfig(seed=1, image_size=32)
    by_seed = [(render_sample(i, s0), render_sample(i, s1)) for i in range(50)]
    assert sum(x[0].tobytes() != y[0].tobytes() for x, y in by_seed) == 50
    assert sum(x[1] != y[1] for x, y in by_seed) >= 45
    captions = [render_sample(i, s0)[1] for i in range(200)]
    assert len(set(captions)) >= 195


def test_attributes_do_not_depend_on_image_size() -> None:
    for index in range(30):
        small = render_sample(index, SyntheticConfig(image_size=32, max_objects=3))
        large = render_sample(index, SyntheticConfig(image_size=64, max_objects=3))
        assert small[1:] == large[1:]


def test_iter_streams_and_slices_agree_with_a_full_run() -> None:
    cfg = SyntheticConfig(num_pairs=30, seed=2, image_size=32)
    stream = iter_synthetic_pairs(cfg)
    assert inspect.isgenerator(stream)
    full = list(stream)
    assert [p.ordinal for p in full] == list(range(30))
    parts = [*iter_synthetic_pairs(cfg, 0, 11), *iter_synthetic_pairs(cfg, 11, 25),
             *iter_synthetic_pairs(cfg, 25)]
    assert len(parts) == 30
    for a, b in zip(full, parts):
        assert isinstance(a, RawPair)
        assert (a.ordinal, a.image_id, a.caption, a.attributes, a.forced_split) == \
               (b.ordinal, b.image_id, b.caption, b.attributes, b.forced_split)
        assert a.pixels.tobytes() == b.pixels.tobytes()
        assert a.image_path is None and a.root is None and a.problems == []
    assert full[7].image_id == "syn-00000007"
    assert list(iter_synthetic_pairs(cfg, 28, 1000))[-1].ordinal == 29  # stops at num_pairs
    assert list(iter_synthetic_pairs(cfg, 12, 12)) == []


def test_streams_a_huge_dataset_lazily() -> None:
    cfg = SyntheticConfig(num_pairs=10**9, image_size=32)
    head = list(itertools.islice(iter_synthetic_pairs(cfg), 3))  # returns at once: nothing is stored
    assert [p.image_id for p in head] == ["syn-00000000", "syn-00000001", "syn-00000002"]
    tail = list(iter_synthetic_pairs(SyntheticConfig(num_pairs=1_000_005, image_size=32), 1_000_000))
    assert [p.ordinal for p in tail] == list(range(1_000_000, 1_000_005))
    assert tail[0].image_id == "syn-01000000"
    assert tail[0].caption == render_sample(1_000_000, SyntheticConfig(image_size=32))[1]


def test_heldout_combinations_only_in_forced_test_rows() -> None:
    cfg = SyntheticConfig(num_pairs=3000, seed=4, image_size=32, max_objects=3,
                          heldout_combinations=["green triangle", "blue star"])
    heldout = {("green", "triangle"), ("blue", "star")}
    forced = 0
    for pair in iter_synthetic_pairs(cfg):
        combos = {(o["colour"], o["shape"]) for o in pair.attributes}
        if pair.forced_split is None:
            assert not combos & heldout
            assert not {(o["colour"], o["shape"]) for o in parse_caption(pair.caption)} & heldout
        else:
            assert pair.forced_split == "test" and combos & heldout
            assert is_heldout(pair.attributes, cfg)
            forced += 1
    assert 0.05 * 3000 < forced < 0.3 * 3000  # every held-out combination has test rows


def test_no_heldout_means_no_forced_rows() -> None:
    cfg = SyntheticConfig(num_pairs=300, image_size=32, heldout_combinations=[])
    assert all(p.forced_split is None for p in iter_synthetic_pairs(cfg))


@pytest.mark.parametrize("seed", [0, 1])
def test_caption_round_trip(seed: int) -> None:
    cfg = SyntheticConfig(seed=seed, image_size=32, max_objects=4)
    u = np.random.default_rng(0)
    for index in range(2500):
        _, caption, attributes = render_sample(int(u.integers(0, 10**7)) if index % 2 else index, cfg)
        assert parse_caption(caption) == attributes, caption


def test_captions_are_worded_in_many_ways() -> None:
    cfg = SyntheticConfig(image_size=32, max_objects=3)
    captions = [render_sample(i, cfg)[1] for i in range(3000)]
    text = " ".join(captions)
    for phrase in ("there is", "corner", "upper", "lower", "tiny", "little", "big", "disc", "block",
                   "plus sign", "purple", "turquoise", "center", "centre", "middle", ": a", " and ",
                   "; ", "shapes:", "-coloured", "right-hand"):
        assert phrase in text, phrase
    # many distinct wordings of one and the same single-object scene
    target = {"shape": "circle", "colour": "red", "size": "small", "position": "top left"}
    one = SyntheticConfig(image_size=32, max_objects=1)
    same = {c for c, a in (render_sample(i, one)[1:] for i in range(20_000)) if a == [target]}
    assert len(same) >= 15


def test_parse_caption_examples() -> None:
    red = {"shape": "circle", "colour": "red", "size": "small", "position": "top left"}
    assert parse_caption("a small red circle in the top left corner") == [red]
    assert parse_caption("Top-left: a tiny red disc.") == [red]
    assert parse_caption("there is a red circle at the upper left") == [{**red, "size": None}]
    assert parse_caption("a big blue star on the right and a little green square at the bottom") == [
        {"shape": "star", "colour": "blue", "size": "large", "position": "right"},
        {"shape": "square", "colour": "green", "size": "small", "position": "bottom"},
    ]
    assert parse_caption("in the middle of the picture, a large magenta-coloured plus sign") == [
        {"shape": "cross", "colour": "magenta", "size": "large", "position": "centre"}]
    assert parse_caption("nothing to see here") == []


def test_rewordings_name_the_same_scene_in_other_words() -> None:
    cfg = SyntheticConfig(image_size=32, max_objects=3)
    differ = 0
    for index in range(300):
        _, caption, attributes = render_sample(index, cfg)
        wordings = reword(attributes, key=index, count=3)
        assert len(wordings) == 3 and all(parse_caption(w) == attributes for w in wordings), wordings
        differ += len(set(wordings) | {caption}) == 4
        assert reword(attributes, key=index, count=3) == wordings  # the key decides
    assert differ >= 250  # nearly always four different captions of one scene
    assert reword(attributes, key=1, count=2) != reword(attributes, key=2, count=2)
    with pytest.raises(ValueError, match="no objects"):
        reword([], key=0, count=1)
