"""A tiny, exact stand-in for fitted latents: synthetic captions whose "image latent" is a
deterministic, compositional function of the caption's ground-truth attributes.

The latent grid is 6 x 6 cells x 4 bits: each of the synthetic source's 3 x 3 object cells owns a
2 x 2 block of latent cells = 16 bits = [present: 2][size: 2][colour: 6][shape: 6], each field a
fixed random code of the attribute's value (an empty cell is all zeros), the whole latent then
XOR-ed with a fixed random mask so that no bit position is constant. Because the code is
compositional, a model can get the bits of a held-out "colour shape" combination right.
"""

from __future__ import annotations

import numpy as np

from bitlatent.core.binary import LatentSpec
from bitlatent.data.shape_checker import COLOURS, POSITIONS, SHAPES, SIZES
from bitlatent.data.synthetic import SyntheticConfig, is_heldout, render_sample

SPEC = LatentSpec(h=6, w=6, bits_per_cell=4, image_size=48)

_rng = np.random.default_rng(20240611)
_COLOUR = _rng.integers(0, 2, (len(COLOURS), 6), dtype=np.uint8)
_SHAPE = _rng.integers(0, 2, (len(SHAPES), 6), dtype=np.uint8)
_SIZE = np.array([[1, 0], [0, 1]], dtype=np.uint8)
_MASK = _rng.integers(0, 2, SPEC.shape, dtype=np.uint8)


def attribute_latent(attributes: list[dict[str, str]]) -> np.ndarray:
    """Ground-truth attributes -> uint8 bits (4, 6, 6)."""
    bits = np.zeros(SPEC.shape, dtype=np.uint8)  # (C, h, w)
    for obj in attributes:
        r, c = divmod(POSITIONS.index(obj["position"]), 3)
        field = np.concatenate([[1, 1], _SIZE[SIZES.index(obj["size"])], _COLOUR[COLOURS.index(obj["colour"])],
                                _SHAPE[SHAPES.index(obj["shape"])]])  # (16,)
        bits[:, 2 * r : 2 * r + 2, 2 * c : 2 * c + 2] = field.reshape(4, 2, 2)
    return bits ^ _MASK


def synthetic_task(n: int, seed: int = 0, max_objects: int = 2) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The first n synthetic samples: (captions, latent bits uint8 (n, 4, 6, 6), held-out flag (n,))."""
    cfg = SyntheticConfig(num_pairs=n, seed=seed, max_objects=max_objects)
    captions, latents, heldout = [], [], []
    for i in range(n):
        _, caption, attributes = render_sample(i, cfg)
        captions.append(caption)
        latents.append(attribute_latent(attributes))
        heldout.append(is_heldout(attributes, cfg))
    return captions, np.stack(latents), np.array(heldout)
