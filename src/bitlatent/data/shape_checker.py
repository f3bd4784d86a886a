"""The geometry of the synthetic shapes world, and a checker that reads it back from pixels.

An image is a 3x3 grid of cells; each object is one coloured shape drawn inside one cell.
This module owns the vocabularies, the grid, the size bands and the shape masks, so that
the renderer (``synthetic.py``) and the checker below agree on them by construction.

The checker never trusts the attribute list it is given: it finds saturated blobs in the
pixels, names each blob's colour (hue), shape (best template by IoU inside the blob's
bounding box), size (bounding-box extent) and position (centroid cell), and only then
compares them with the claim.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

SHAPES: tuple[str, ...] = ("circle", "square", "triangle", "cross", "star")
COLOURS: tuple[str, ...] = ("red", "yellow", "green", "cyan", "blue", "magenta")  # hue order
COLOUR_HUES: dict[str, float] = {c: 60.0 * i for i, c in enumerate(COLOURS)}  # degrees
SIZES: tuple[str, ...] = ("small", "large")
POSITIONS: tuple[str, ...] = (
    "top left", "top", "top right",
    "left", "centre", "right",
    "bottom left", "bottom", "bottom right",
)  # row-major over the 3x3 grid

MIN_CHROMA = 0.35  # max(rgb) - min(rgb) above this is "object"; backgrounds stay below 0.14
MIN_SHAPE_IOU = 0.5  # a blob that fits no template this well is not an object
MAX_RING_CHROMA = 0.2  # an object stands on a dull background: median chroma just outside it
_SUPERSAMPLE = 8  # masks are drawn 8x larger and box-filtered: anti-aliased edges


# --- geometry shared with the renderer -------------------------------------------------

def cell_edges(n: int) -> tuple[int, int, int, int]:
    """Pixel boundaries of the 3 grid cells along an axis of ``n`` pixels."""
    return (0, n // 3, 2 * n // 3, n)


def extent_range(image_size: int, size: str) -> tuple[int, int]:
    """Inclusive range of an object's bounding-box side, in pixels, for ``size``.

    Objects keep a 1-pixel gap to the next cell, so neighbours never touch.
    """
    cw = image_size // 3
    if size == "small":
        return round(0.55 * cw), round(0.62 * cw)
    return round(0.85 * cw), cw - 1


def size_threshold(image_size: int) -> float:
    """Extents above this read as ``large``: halfway between the two bands."""
    return (extent_range(image_size, "small")[1] + extent_range(image_size, "large")[0]) / 2


def _star_points(w: float, h: float, inner: float = 0.45) -> list[tuple[float, float]]:
    angles = -np.pi / 2 + np.arange(10) * np.pi / 5
    radii = np.where(np.arange(10) % 2 == 0, 1.0, inner)
    pts = np.stack([radii * np.cos(angles), radii * np.sin(angles)], axis=1)
    pts = (pts - pts.min(0)) / (pts.max(0) - pts.min(0))  # stretch to fill the box
    return [(float(x * w), float(y * h)) for x, y in pts]


@lru_cache(maxsize=4096)
def shape_alpha(shape: str, h: int, w: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1], float32 (h, w), of ``shape`` filling an h x w box."""
    H, W = h * _SUPERSAMPLE, w * _SUPERSAMPLE
    canvas = Image.new("L", (W, H), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == "circle":
        draw.ellipse([0, 0, W - 1, H - 1], fill=255)
    elif shape == "square":
        draw.rectangle([0, 0, W - 1, H - 1], fill=255)
    elif shape == "triangle":
        draw.polygon([(W / 2, 0), (W, H), (0, H)], fill=255)
    elif shape == "cross":
        t = 0.17  # half the arm thickness, as a fraction of the box
        draw.rectangle([W * (0.5 - t), 0, W * (0.5 + t), H], fill=255)
        draw.rectangle([0, H * (0.5 - t), W, H * (0.5 + t)], fill=255)
    elif shape == "star":
        draw.polygon(_star_points(W, H), fill=255)
    else:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    alpha = np.asarray(canvas.resize((w, h), Image.Resampling.BOX), dtype=np.float32) / 255.0
    alpha.flags.writeable = False
    return alpha


@lru_cache(maxsize=1024)
def _templates(shape: str, extent: int) -> tuple[np.ndarray, ...]:
    """Tight binary masks of ``shape`` drawn near ``extent`` and cut at several coverages.

    A pixel passes the checker's chroma cut at roughly 35-65% coverage, depending on the
    colours, and thin tips can vanish; trying a few sizes and cuts absorbs both.
    """
    out: dict[tuple[tuple[int, ...], bytes], np.ndarray] = {}
    for e in range(max(2, extent - 1), extent + 3):
        for cut in (0.3, 0.5, 0.7):
            mask = shape_alpha(shape, e, e) >= cut
            ys, xs = np.nonzero(mask)
            if len(ys):
                mask = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
                out.setdefault((mask.shape, mask.tobytes()), mask)
    return tuple(out.values())


def _iou(mask: np.ndarray, template: np.ndarray) -> float:
    """Best IoU of two tight masks over the alignments where one box holds the other's edge."""
    (h, w), (th, tw) = mask.shape, template.shape
    if abs(h - th) > 2 or abs(w - tw) > 2:
        return 0.0
    area = np.count_nonzero(mask) + np.count_nonzero(template)
    best = 0.0
    for oy in range(min(0, h - th), max(0, h - th) + 1):
        for ox in range(min(0, w - tw), max(0, w - tw) + 1):
            r0, r1, c0, c1 = max(0, oy), min(h, oy + th), max(0, ox), min(w, ox + tw)
            inter = np.count_nonzero(mask[r0:r1, c0:c1] & template[r0 - oy:r1 - oy, c0 - ox:c1 - ox])
            best = max(best, inter / (area - inter))
    return best


# --- reading objects back from pixels -------------------------------------------------

def _colour_classes(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel: index into COLOURS of its hue (-1 where not saturated), and the chroma."""
    rgb = image.astype(np.float32) / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    mx = rgb.max(-1)
    chroma = mx - rgb.min(-1)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(
        mx == r, ((g - b) / safe) % 6.0, np.where(mx == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    )  # in sixths of a turn, [0, 6)
    classes = np.rint(hue).astype(np.int64) % 6
    return np.where(chroma >= MIN_CHROMA, classes, -1), chroma


def _dilate(mask: np.ndarray, steps: int) -> np.ndarray:
    """Grow a boolean mask by ``steps`` pixels (8-neighbourhood)."""
    for _ in range(steps):
        grown = mask.copy()
        grown[1:] |= mask[:-1]
        grown[:-1] |= mask[1:]
        grown[:, 1:] |= grown[:, :-1].copy()
        grown[:, :-1] |= grown[:, 1:].copy()
        mask = grown
    return mask


def _ring_chroma(chroma: np.ndarray, component: np.ndarray, gap: int) -> float:
    """Median chroma of the 1-pixel ring lying ``gap`` pixels outside ``component``."""
    inner = _dilate(component, gap)
    ring = _dilate(inner, 1) & ~inner
    return float(np.median(chroma[ring])) if ring.any() else 0.0


def _components(classes: np.ndarray) -> np.ndarray:
    """4-connected components of equal, non-negative class; background gets a huge label."""
    h, w = classes.shape
    big = h * w
    labels = np.where(classes >= 0, np.arange(big).reshape(h, w), big)
    fg = classes >= 0
    fg_flat = fg.reshape(-1)
    join_x = fg[:, :-1] & (classes[:, :-1] == classes[:, 1:])
    join_y = fg[:-1, :] & (classes[:-1, :] == classes[1:, :])
    while True:
        new = labels.copy()
        m = np.where(join_x, np.minimum(labels[:, :-1], labels[:, 1:]), big)
        new[:, :-1] = np.minimum(new[:, :-1], m)
        new[:, 1:] = np.minimum(new[:, 1:], m)
        m = np.where(join_y, np.minimum(labels[:-1, :], labels[1:, :]), big)
        new[:-1, :] = np.minimum(new[:-1, :], m)
        new[1:, :] = np.minimum(new[1:, :], m)
        flat = new.reshape(-1)  # pointer jump: a label is a pixel of the same component
        flat[fg_flat] = flat[flat[fg_flat]]
        if np.array_equal(new, labels):
            return labels
        labels = new


def _best_shape(mask: np.ndarray) -> tuple[str, float]:
    """The shape whose template overlaps the tight blob ``mask`` best, and that IoU."""
    extent = max(mask.shape)
    scores = [max(_iou(mask, t) for t in _templates(shape, extent)) for shape in SHAPES]
    i = int(np.argmax(scores))
    return SHAPES[i], scores[i]


def detect_objects(image: np.ndarray) -> list[dict[str, Any]]:
    """Every object-like blob in ``image`` (uint8 H x W x 3) with its attributes as read."""
    image = _as_uint8(image)
    h, w = image.shape[:2]
    size = min(h, w)
    lo_small = extent_range(size, "small")[0]
    min_area = max(4, round(0.25 * lo_small**2))
    max_extent = 1.5 * (size // 3)
    classes, chroma = _colour_classes(image)
    labels = _components(classes)
    ids, counts = np.unique(labels[labels < h * w], return_counts=True)
    rows_edges, cols_edges = cell_edges(h), cell_edges(w)
    pad = max(1, size // 32) + 1  # ring: the pixels 2 away from the blob (3 at 64, ...)
    found = []
    for label in ids[counts >= min_area]:
        ys, xs = np.nonzero(labels == label)
        y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
        extent = max(y1 - y0, x1 - x0)
        if extent > max_extent:
            continue
        shape, score = _best_shape(labels[y0:y1, x0:x1] == label)
        if score < MIN_SHAPE_IOU:
            continue
        wy0, wx0 = max(0, y0 - pad), max(0, x0 - pad)
        window = (slice(wy0, y1 + pad), slice(wx0, x1 + pad))
        if _ring_chroma(chroma[window], labels[window] == label, pad - 1) > MAX_RING_CHROMA:
            continue  # a saturated patch fading into more colour, not an object on a background
        cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
        row = int(np.searchsorted(rows_edges[1:3], cy, side="right"))
        col = int(np.searchsorted(cols_edges[1:3], cx, side="right"))
        found.append({
            "shape": shape, "colour": COLOURS[classes[ys[0], xs[0]]],
            "size": "large" if extent > size_threshold(size) else "small",
            "position": POSITIONS[3 * row + col],
            "centroid": (float(cy), float(cx)), "area": int(len(ys)), "shape_iou": score,
        })
    return found


def _cell_centre(position: str, h: int, w: int) -> tuple[float, float]:
    row, col = divmod(POSITIONS.index(position), 3)
    ry, cx = cell_edges(h), cell_edges(w)
    return (ry[row] + ry[row + 1]) / 2, (cx[col] + cx[col + 1]) / 2


def check_attributes(image: np.ndarray, attributes: list[dict[str, Any]]) -> dict[str, Any]:
    """Verify each claimed object's shape, colour, size and position against the pixels.

    Each claim is paired with at most one detected blob (greedily, best pairs first): the
    blob must agree on colour or position to be paired at all, and among those the one
    agreeing on more of the two, then the one nearest the claimed cell, wins. The other
    attributes are then read off that blob. An unpaired claim scores zero.
    """
    image = _as_uint8(image)
    h, w = image.shape[:2]
    found = detect_objects(image)
    pairs = []
    for ci, claim in enumerate(attributes):
        cy, cx = _cell_centre(claim["position"], h, w)
        for di, det in enumerate(found):
            agree = (det["colour"] == claim["colour"]) + (det["position"] == claim["position"])
            if agree:
                dist = np.hypot(det["centroid"][0] - cy, det["centroid"][1] - cx)
                pairs.append((-agree, dist, -det["area"], ci, di))
    pairs.sort()
    paired: dict[int, dict[str, Any]] = {}
    used: set[int] = set()
    for *_, ci, di in pairs:
        if ci not in paired and di not in used:
            paired[ci] = found[di]
            used.add(di)
    objects, detected = [], []
    for ci, claim in enumerate(attributes):
        det = paired.get(ci)
        keys = ("shape", "colour", "size", "position")
        objects.append({k: bool(det is not None and det[k] == claim[k]) for k in keys})
        detected.append(None if det is None else {k: det[k] for k in keys})
    correct = sum(sum(o.values()) for o in objects)
    total = 4 * len(objects)
    return {"objects": objects, "detected": detected, "correct": correct, "total": total,
            "accuracy": correct / total if total else 0.0}


def attribute_breakdown(images: np.ndarray, attributes_list: list[list[dict[str, Any]]]) -> dict[str, float]:
    """Where the pixels and the claims part: over all claimed objects of all images, the fraction
    whose shape, colour, size and position the pixels confirm (each on its own), the fraction
    paired with a detected blob at all (``objects_found``), and ``accuracy``, the mean of the four
    attributes (``attribute_accuracy``)."""
    if len(images) != len(attributes_list):
        raise ValueError(f"{len(images)} images but {len(attributes_list)} attribute lists")
    keys = ("shape", "colour", "size", "position")
    right = dict.fromkeys(keys, 0)
    objects = found = 0
    for image, attributes in zip(images, attributes_list):
        result = check_attributes(image, attributes)
        for verdict, detected in zip(result["objects"], result["detected"]):
            objects += 1
            found += detected is not None
            for key in keys:
                right[key] += verdict[key]
    if objects == 0:
        raise ValueError("no attributes to check")
    return {"accuracy": sum(right.values()) / (len(keys) * objects),
            **{key: right[key] / objects for key in keys}, "objects_found": found / objects}


def attribute_accuracy(images: np.ndarray, attributes_list: list[list[dict[str, Any]]]) -> float:
    """Fraction of all claimed attributes, over all images, that the pixels confirm."""
    return attribute_breakdown(images, attributes_list)["accuracy"]


def _as_uint8(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3); float images are taken to be in [0, 1]."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (H, W, 3) image, got shape {image.shape}")
    if image.dtype != np.uint8:
        image = (np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return image
