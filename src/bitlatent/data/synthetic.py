"""Synthetic captioned shapes: the embedded default data source.

Each sample is a pure function of ``(seed, index)``: one to ``max_objects`` coloured shapes,
each in its own cell of a 3x3 grid, on a textured, desaturated background, with a caption
that names every object's size, colour, shape and position in one of many wordings. The
ground-truth attributes travel beside the caption, ``parse_caption`` recovers them from
the caption text, and ``check_attributes`` reads them back from pixels (see
``shape_checker.py``), so the text-image coherence of generated images can be measured.

Nothing is stored: any slice of a 1M-pair (or larger) dataset renders on demand.
"""

from __future__ import annotations

import colorsys
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image

from bitlatent.config import ConfigGroup
from bitlatent.data.records import RawPair
from bitlatent.data.shape_checker import (  # noqa: F401  (re-exported API)
    COLOUR_HUES, COLOURS, POSITIONS, SHAPES, SIZES, attribute_accuracy, attribute_breakdown, cell_edges,
    check_attributes, extent_range, shape_alpha,
)


@dataclass
class SyntheticConfig(ConfigGroup):
    """What to generate. Every sample depends only on ``seed``, its index and these fields."""

    GROUP = "data.synthetic"

    num_pairs: int = 2000
    """Dataset length; indices run over [0, num_pairs)."""
    seed: int = 0
    """Non-negative; a different seed gives a different dataset."""
    image_size: int = 64
    """Square side in pixels: a power of two in 32..256."""
    max_objects: int = 2
    """Each image holds 1..max_objects objects (at most 9, one per cell)."""
    heldout_combinations: list[str] = field(default_factory=lambda: ["green triangle", "blue star"])
    """"colour shape" pairs that never appear in training: rows using one go to the test split."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.heldout_combinations = list(self.heldout_combinations or [])
        size = self.image_size
        if size not in (32, 64, 128, 256):
            raise ValueError(f"image_size must be a power of two in 32..256, got {size}")
        if not 1 <= self.max_objects <= 9:
            raise ValueError(f"max_objects must be in 1..9, got {self.max_objects}")
        if self.num_pairs < 0 or self.seed < 0:
            raise ValueError("num_pairs and seed must be non-negative")
        for combo in self.heldout_combinations:
            colour, _, shape = combo.partition(" ")
            if colour not in COLOURS or shape not in SHAPES:
                raise ValueError(f"held-out combination {combo!r} is not 'colour shape' "
                                 f"with colour in {COLOURS} and shape in {SHAPES}")


# --- backgrounds: a small bank of grey patterns per size, tinted and shifted per sample ----

_BANK_SIZE = 40


@lru_cache(maxsize=8)
def _texture_bank(image_size: int) -> np.ndarray:
    """(_BANK_SIZE, P, P) float32 patterns in [0, 1], P = 1.5 x image_size; fixed forever."""
    rng = np.random.default_rng([0xB17, image_size])
    p = image_size + image_size // 2
    y, x = np.mgrid[0:p, 0:p].astype(np.float32) / image_size  # in image widths
    bank = np.empty((_BANK_SIZE, p, p), np.float32)
    for i in range(_BANK_SIZE):
        theta, phase = rng.uniform(0, np.pi), rng.uniform(0, 2 * np.pi)
        along = x * np.cos(theta) + y * np.sin(theta)
        kind = i % 5
        if kind == 0:  # stripes
            pat = np.sin(2 * np.pi * rng.uniform(2.5, 9) * along + phase)
        elif kind == 1:  # checks
            across = -x * np.sin(theta) + y * np.cos(theta)
            f = rng.uniform(2, 7)
            pat = np.tanh(4 * np.sin(2 * np.pi * f * along) * np.sin(2 * np.pi * f * across))
        elif kind == 2:  # gradient
            pat = along - along.mean()
        else:  # smooth value noise (blotches), coarse or fine
            grid = int(rng.integers(3, 10 if kind == 3 else 18))
            coarse = Image.fromarray(rng.random((grid, grid), dtype=np.float32))
            pat = np.asarray(coarse.resize((p, p), Image.Resampling.BICUBIC), np.float32)
        pat = pat + rng.uniform(0.1, 0.35) * rng.standard_normal((p, p)).astype(np.float32) * pat.std()
        bank[i] = (pat - pat.min()) / (pat.max() - pat.min())
    return bank


def _tone(hue: float, sat: float, val: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, sat, val), np.float32)


def _background(u: Iterator[float], size: int) -> np.ndarray:
    bank = _texture_bank(size)
    pat = bank[int(next(u) * len(bank))]
    top, left = int(next(u) * (size // 2 + 1)), int(next(u) * (size // 2 + 1))
    pat = pat[top:top + size, left:left + size]
    if next(u) < 0.5:
        pat = pat.T
    if next(u) < 0.5:
        pat = pat[::-1]
    hue = next(u)
    dark = _tone(hue, 0.15 * next(u), 0.2 + 0.35 * next(u))
    light = _tone(hue + 0.3 * (next(u) - 0.5), 0.15 * next(u), float(dark.max()) + 0.12 + 0.25 * next(u))
    return dark + pat[..., None] * (light - dark)


# --- scenes -------------------------------------------------------------------------------

def _pick(u: Iterator[float], options: Sequence[Any]) -> Any:
    return options[int(next(u) * len(options))]


def _scene(u: Iterator[float], cfg: SyntheticConfig) -> tuple[np.ndarray, list[dict[str, str]]]:
    """Draw the objects and paint them on a background; returns (float image, attributes)."""
    size = cfg.image_size
    image = _background(u, size)
    edges = cell_edges(size)
    free = list(range(9))
    attributes = []
    for _ in range(1 + int(next(u) * cfg.max_objects)):
        cell = free.pop(int(next(u) * len(free)))
        obj = {"shape": _pick(u, SHAPES), "colour": _pick(u, COLOURS),
               "size": _pick(u, SIZES), "position": POSITIONS[cell]}
        lo, hi = extent_range(size, obj["size"])
        e = lo + int(next(u) * (hi - lo + 1))
        row, col = divmod(cell, 3)  # keep a 1-pixel gap before the next cell
        y0 = edges[row] + int(next(u) * (edges[row + 1] - edges[row] - e))
        x0 = edges[col] + int(next(u) * (edges[col + 1] - edges[col] - e))
        hue = COLOUR_HUES[obj["colour"]] / 360.0 + (next(u) - 0.5) / 18.0  # +-10 degrees
        rgb = _tone(hue, 0.9 + 0.1 * next(u), 0.85 + 0.15 * next(u))
        alpha = shape_alpha(obj["shape"], e, e)[..., None]
        window = image[y0:y0 + e, x0:x0 + e]
        window += alpha * (rgb - window)
        attributes.append(obj)
    return image, attributes


# --- captions -----------------------------------------------------------------------------

_SIZE_WORDS = {"small": ("small", "little", "tiny"), "large": ("large", "big")}
_COLOUR_WORDS = {"red": ("red",), "yellow": ("yellow",), "green": ("green",),
                 "cyan": ("cyan", "turquoise"), "blue": ("blue",), "magenta": ("magenta", "purple")}
_SHAPE_WORDS = {"circle": ("circle", "disc", "disk"), "square": ("square", "block"),
                "triangle": ("triangle",), "cross": ("cross", "plus sign"),
                "star": ("star", "five-pointed star")}
_VERTICAL = {"top": ("top", "upper"), "bottom": ("bottom", "lower")}
# where-phrases follow the noun ("... in the top left corner"); labels precede a colon ("top-left: ...")
_CORNER_WHERE = ("in the {v} {h} corner", "at the {v} {h}", "in the {v}-{h} corner",
                 "at the {v} {h} of the image", "near the {v} {h} corner")
_EDGE_WHERE = {
    "top": ("at the top", "at the top centre", "in the upper middle", "along the top edge",
            "near the top", "in the top center"),
    "bottom": ("at the bottom", "at the bottom centre", "in the lower middle",
               "along the bottom edge", "near the bottom", "in the bottom center"),
    "left": ("on the left", "at the left side", "in the middle left", "along the left edge",
             "on the left-hand side", "at the centre left"),
    "right": ("on the right", "at the right side", "in the middle right", "along the right edge",
              "on the right-hand side", "at the centre right"),
    "centre": ("in the centre", "in the center", "in the middle", "at the centre of the image",
               "in the middle of the picture", "dead centre"),
}
_EDGE_LABELS = {"top": ("top", "top centre", "upper middle"),
                "bottom": ("bottom", "bottom centre", "lower middle"),
                "left": ("left", "middle left", "left side"),
                "right": ("right", "middle right", "right side"), "centre": ("centre", "center", "middle")}
_NOUN_PHRASES = ("{size} {colour} {shape}", "{size}, {colour} {shape}", "{size} {shape} in {colour}",
                 "{size} {colour}-coloured {shape}")
_CLAUSES = ("{a} {np} {where}", "there is {a} {np} {where}", "{where}, {a} {np}",
            "{where} there is {a} {np}", "{label}: {a} {np}", "{a} {np} sits {where}",
            "you can see {a} {np} {where}")
_JOINS = (" and ", "; ", ", and ", ". also ", ". ")
_COUNTS = ("", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _where_and_label(u: Iterator[float], position: str) -> tuple[str, str]:
    if position in _EDGE_WHERE:
        return _pick(u, _EDGE_WHERE[position]), _pick(u, _EDGE_LABELS[position])
    vertical, horizontal = position.split()
    v = _pick(u, _VERTICAL[vertical])
    return _pick(u, _CORNER_WHERE).format(v=v, h=horizontal), f"{v}{_pick(u, (' ', '-'))}{horizontal}"


def _describe(u: Iterator[float], obj: dict[str, str]) -> str:
    np_ = _pick(u, _NOUN_PHRASES).format(size=_pick(u, _SIZE_WORDS[obj["size"]]),
                                         colour=_pick(u, _COLOUR_WORDS[obj["colour"]]),
                                         shape=_pick(u, _SHAPE_WORDS[obj["shape"]]))
    where, label = _where_and_label(u, obj["position"])
    article = "an" if np_[0] in "aeiou" else "a"
    return _pick(u, _CLAUSES).format(a=article, np=np_, where=where, label=label)


def _caption(u: Iterator[float], attributes: list[dict[str, str]]) -> str:
    """One wording, drawn from ``u``, that names every object's four attributes in order."""
    text = _describe(u, attributes[0])
    for obj in attributes[1:]:
        text += _pick(u, _JOINS) + _describe(u, obj)
    if len(attributes) > 1 and next(u) < 0.3:
        text = f"{_COUNTS[len(attributes)]} shapes: {text}"
    return text + ("." if next(u) < 0.5 else "")


def _word_pattern(table: dict[str, tuple[str, ...]]) -> list[tuple[re.Pattern[str], str]]:
    pairs = sorted(((w, k) for k, ws in table.items() for w in ws), key=lambda p: -len(p[0]))
    return [(re.compile(rf"\b{re.escape(w)}\b"), k) for w, k in pairs]


_SIZE_RE, _COLOUR_RE, _SHAPE_RE = (_word_pattern(t) for t in (_SIZE_WORDS, _COLOUR_WORDS, _SHAPE_WORDS))
_SPLIT_RE = re.compile(r";\s*|,?\s+and\s+|\.\s+(?:also\s+)?")


def _find(patterns: list[tuple[re.Pattern[str], str]], clause: str) -> str | None:
    return next((key for pattern, key in patterns if pattern.search(clause)), None)


def parse_caption(caption: str) -> list[dict[str, str]]:
    """Attributes named by a caption in this source's wording, one dict per object, in order.

    A clause naming no shape is skipped; a missing size, colour or position reads as None.
    """
    objects = []
    for clause in _SPLIT_RE.split(caption.lower().strip().rstrip(".")):
        shape = _find(_SHAPE_RE, clause)
        if shape is None:
            continue
        words = set(re.findall(r"[a-z]+", clause))
        vertical = "top" if words & {"top", "upper"} else "bottom" if words & {"bottom", "lower"} else ""
        horizontal = "left" if "left" in words else "right" if "right" in words else ""
        position = f"{vertical} {horizontal}".strip() or "centre"
        objects.append({"shape": shape, "colour": _find(_COLOUR_RE, clause),
                        "size": _find(_SIZE_RE, clause), "position": position})
    return objects


# --- the public source --------------------------------------------------------------------

def _uniforms(index: int, cfg: SyntheticConfig) -> Iterator[float]:
    """The sample's random numbers: a fixed-length stream from (seed, index) alone."""
    return iter(np.random.default_rng([cfg.seed, index]).random(24 + 32 * cfg.max_objects).tolist())


def render_sample(index: int, cfg: SyntheticConfig) -> tuple[np.ndarray, str, list[dict[str, str]]]:
    """Sample ``index``: (uint8 (H, W, 3) image, caption, ground-truth attributes)."""
    if index < 0:
        raise ValueError(f"index must be non-negative, got {index}")
    u = _uniforms(index, cfg)
    image, attributes = _scene(u, cfg)
    caption = _caption(u, attributes)
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return pixels, caption, attributes


def reword(attributes: list[dict[str, str]], key: int, count: int) -> list[str]:
    """``count`` further wordings of a scene's caption, in this source's grammar: wording ``k``
    drawn from a stream seeded by ``(key, k)``, so the same key gives the same wordings. Each names
    every object's four attributes in order (``parse_caption`` reads them back)."""
    if not attributes:
        raise ValueError("a scene with no objects has no caption to reword")
    return [_caption(iter(np.random.default_rng([int(key), k]).random(8 + 32 * len(attributes)).tolist()), attributes)
            for k in range(1, count + 1)]  # fmt: skip


def is_heldout(attributes: list[dict[str, str]], cfg: SyntheticConfig) -> bool:
    """True when any object's "colour shape" is one of the held-out combinations."""
    heldout = set(cfg.heldout_combinations)
    return any(f"{o['colour']} {o['shape']}" in heldout for o in attributes)


def iter_synthetic_pairs(cfg: SyntheticConfig, start: int = 0, stop: int | None = None) -> Iterator[RawPair]:
    """Stream samples ``start`` .. ``min(stop, num_pairs)`` as RawPairs, one at a time."""
    stop = cfg.num_pairs if stop is None else min(stop, cfg.num_pairs)
    for index in range(max(start, 0), stop):
        pixels, caption, attributes = render_sample(index, cfg)
        yield RawPair(ordinal=index, image_id=f"syn-{index:08d}", caption=caption, pixels=pixels,
                      attributes=attributes, forced_split="test" if is_heldout(attributes, cfg) else None)
