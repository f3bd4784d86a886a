"""Measures that show collapse where attribute accuracy cannot: how different one caption's samples
are, and how far generated images lie from real ones.

* ``latent_diversity``: the mean pairwise Hamming distance between the latents drawn for one caption
  (as a fraction of the latent's bits), averaged over captions. 0: every draw the same latent.
* ``layout_diversity``: the synthetic checker's object layout (colour, shape, position of every
  detected blob) per sample; the mean fraction of a caption's samples whose layout differs from
  another's. 0: the samples agree on what is where (which a caption that pins it down asks for).
* ``frechet_distance`` over ``SceneFeatures``: a small CNN trained here, on the synthetic source's
  real training images, to name the colour and shape at each of the 3 x 3 grid positions (or
  nothing). Its penultimate features carry what the captions talk about; the Fréchet distance
  between the feature Gaussians of generated and of real test images is the FID recipe with a
  network that knows these scenes (no pretrained vision model ships with bitlatent). Decoded
  latents are blurrier than the source, so the reconstructed test latents' distance is the floor
  any mode can reach.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import linalg

from bitlatent.data.shape_checker import COLOURS, POSITIONS, SHAPES, detect_objects

__all__ = ["latent_diversity", "layout_diversity", "SceneFeatures", "train_scene_features", "scene_features",
           "frechet_distance"]


def latent_diversity(bits: np.ndarray) -> float:
    """Latents (N, S, C, h, w) in {0, 1}, S >= 2 samples per caption -> the mean over captions of the
    mean pairwise Hamming distance of their samples, as a fraction of the bits."""
    n, s = bits.shape[:2]
    if s < 2:
        raise ValueError(f"diversity needs at least 2 samples per caption, got {s}")
    signs = bits.reshape(n, s, -1).astype(np.float32) * 2 - 1  # (N, S, D)
    d = signs.shape[-1]
    agreement = signs @ signs.transpose(0, 2, 1)  # (N, S, S): D - 2 * Hamming
    pairs = ~np.eye(s, dtype=bool)
    return float(((d - agreement[:, pairs]) / (2 * d)).mean())


def _layout(image: np.ndarray) -> tuple:
    return tuple(sorted((o["position"], o["colour"], o["shape"]) for o in detect_objects(image)))


def layout_diversity(images: np.ndarray) -> float:
    """Decoded samples (N, S, H, W, 3) -> the mean over captions of the fraction of sample pairs whose
    checker layouts (position, colour, shape of every detected object) differ."""
    n, s = images.shape[:2]
    if s < 2:
        raise ValueError(f"diversity needs at least 2 samples per caption, got {s}")
    scores = []
    for row in images:
        layouts = [_layout(image) for image in row]
        scores.append(np.mean([layouts[i] != layouts[j] for i in range(s) for j in range(s) if i != j]))
    return float(np.mean(scores))


class SceneFeatures(nn.Module):
    """Images uint8 (B, H, W, 3) -> per grid position, logits of the colour (or none) and of the shape
    (or none); ``features`` gives the penultimate layer (B, width), what ``frechet_distance`` compares."""

    def __init__(self, image_size: int, width: int = 128):
        super().__init__()
        self.image_size = image_size
        c = 32
        self.convs = nn.Sequential(  # (B, 3, S, S) -> (B, 4c, S/8, S/8)
            nn.Conv2d(3, c, 3, padding=1), nn.GELU(),
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1), nn.GELU(),
            nn.Conv2d(4 * c, 4 * c, 3, stride=2, padding=1), nn.GELU(),
        )
        side = image_size // 8
        self.embed = nn.Sequential(nn.Flatten(1), nn.Linear(4 * c * side * side, width), nn.GELU())
        self.colour = nn.Linear(width, len(POSITIONS) * (len(COLOURS) + 1))
        self.shape = nn.Linear(width, len(POSITIONS) * (len(SHAPES) + 1))

    def features(self, images: torch.Tensor) -> torch.Tensor:
        x = images.permute(0, 3, 1, 2).float() / 127.5 - 1  # (B, 3, S, S) in [-1, 1]
        return self.embed(self.convs(x))  # (B, width)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        f = self.features(images)
        return (self.colour(f).unflatten(1, (len(POSITIONS), -1)),  # (B, 9, colours + 1)
                self.shape(f).unflatten(1, (len(POSITIONS), -1)))  # (B, 9, shapes + 1)


def _labels(attributes: list[list[dict[str, Any]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image and grid position: the colour and shape class, 0 for an empty cell."""
    colour = torch.zeros(len(attributes), len(POSITIONS), dtype=torch.long)
    shape = torch.zeros_like(colour)
    for i, objects in enumerate(attributes):
        for o in objects:
            p = POSITIONS.index(o["position"])
            colour[i, p] = COLOURS.index(o["colour"]) + 1
            shape[i, p] = SHAPES.index(o["shape"]) + 1
    return colour, shape


def train_scene_features(images: np.ndarray, attributes: list[list[dict[str, Any]]], epochs: int = 8,
                         batch_size: int = 64, seed: int = 0) -> SceneFeatures:  # fmt: skip
    """Train ``SceneFeatures`` on real images uint8 (N, S, S, 3) and their synthetic attributes (Adam,
    cross-entropy of every position's colour and shape) -> the model in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = SceneFeatures(images.shape[1])
    colour, shape = _labels(attributes)
    pixels = torch.from_numpy(np.ascontiguousarray(images))
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(epochs):
        for rows in torch.randperm(len(pixels), generator=generator).split(batch_size):
            colour_logits, shape_logits = model(pixels[rows])
            loss = F.cross_entropy(colour_logits.flatten(0, 1), colour[rows].flatten()) + \
                F.cross_entropy(shape_logits.flatten(0, 1), shape[rows].flatten())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def scene_features(model: SceneFeatures, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Images uint8 (N, S, S, 3) -> float64 features (N, width)."""
    parts = [model.features(torch.from_numpy(np.ascontiguousarray(images[lo : lo + batch_size]))).double().numpy()
             for lo in range(0, len(images), batch_size)]  # fmt: skip
    return np.concatenate(parts)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Features (n, D) and (m, D) -> the Fréchet distance of the Gaussians fitted to each:
    |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    offset = 1e-6 * np.eye(len(cov_a))  # fewer samples than features: keep the product's square root defined
    cov_a, cov_b = cov_a + offset, cov_b + offset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b).real
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))
