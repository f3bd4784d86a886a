"""The ``evaluation`` parameter group (``conf/base/parameters_evaluation.yml``) as a typed config.

What the evaluation measures and on how many images and captions.
A ``bitlatent.config.ConfigGroup``: unknown keys are an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitlatent.config import ConfigGroup


@dataclass
class EvaluationConfig(ConfigGroup):
    """``evaluation``: reconstruction quality, capacity and the rate–distortion comparison."""

    GROUP = "evaluation"

    max_images_per_split: int | None = 1000
    """Images decoded per split for PSNR/SSIM (the first by image id); null: all."""
    codec_images: int = 300
    """Test images JPEG and WebP are run on at matched bits per image."""
    grid_images: int = 8
    """Originals shown beside their reconstructions in the grid, per split (and generated images)."""
    generated_captions: int = 500
    """Test captions images are generated from, for attribute accuracy (synthetic source)."""
    generate_guidance: float | None = None
    """Classifier-free guidance of the generate mode's cell prior (None: the text model's
    ``prior_guidance``; 1: none)."""
    generate_temperature: float = 1.0
    """Temperature of the generate mode (seed 0). 1: draws from the cell prior as trained (greedy
    draws, 0, collapse to the most likely cell, the background); models without a prior sample
    their per-bit predictions."""
    refine_strength: float = 0.5
    """Refine mode: fraction of the retrieved latent moved toward the text model's prediction (with a
    cell prior: the cells drawn again, at ``generate_temperature``; without: the bits flipped)."""
    library_images: int = 20000
    """Training latents that retrieve and refine search when evaluating generation (the first ones)."""
    diversity_captions: int = 100
    """Test captions drawn ``diversity_samples`` times each (seeds 0..) for the diversity measures
    (``evaluation.generation_quality``); 0 skips them."""
    diversity_samples: int = 4
    """Samples per caption for the diversity measures (at least 2)."""
    scene_feature_epochs: int = 8
    """Epochs of the synthetic scenes' feature network (``SceneFeatures``) behind the Fréchet
    distance, trained on the training splits' real images; 0 skips the distance."""
    max_capacity_ratio: float = 1.0
    """Warn when decoder parameter bits exceed this multiple of the latent bits."""
