"""Typed parameter groups of the model pipelines (``conf/base/parameters_<pipeline>.yml``).

The model's own configs (``DecoderConfig``, ``TrainConfig``) live in ``bitlatent.core``; these
dataclasses say how the pipelines use them. Unknown keys are an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from bitlatent.core.train import TrainConfig


def _strict(cls, params: dict[str, Any], group: str):
    known = {f.name for f in fields(cls)}
    unknown = set(params or {}) - known
    if unknown:
        raise ValueError(f"unknown {group} parameter(s) {sorted(unknown)}; known: {sorted(known)}")
    return cls(**(params or {}))


def train_config(params: dict[str, Any] | None, group: str) -> TrainConfig:
    """A ``TrainConfig`` from a ``train:`` block."""
    try:
        return TrainConfig.from_dict(dict(params or {}))
    except (TypeError, ValueError) as error:
        raise ValueError(f"{group}.train: {error}") from error


@dataclass
class PretrainingConfig:
    """``pretraining``: the decoder and the pretrain split's latents, trained jointly."""

    checkpoint_root: str = "data/06_models/checkpoints/pretraining"
    """Checkpoints go to ``<root>/<fingerprint>/``; the fingerprint covers the configs and the data,
    so a rerun with the same inputs resumes (or returns at once) and any change starts afresh."""
    train: dict[str, Any] = field(default_factory=dict)
    """``TrainConfig`` fields for stage 1 (epochs, batch_size, decoder_lr, latent_lr, ...)."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> PretrainingConfig:
        config = _strict(cls, params, "pretraining")
        train_config(config.train, "pretraining")  # fail early on a typo
        return config


@dataclass
class AdaptationConfig:
    """``latent_adaptation``: latents fitted for other splits with the decoder frozen."""

    shard: int = 0
    """This job's index, in ``[0, num_shards)``."""
    num_shards: int = 1
    """Jobs the work is split into; job k fits image shards k, k + n, k + 2n, ... of the splits."""
    splits: list[str] = field(default_factory=lambda: ["adapt", "test"])
    """Splits whose latents are fitted here."""
    train: dict[str, Any] = field(default_factory=dict)
    """``TrainConfig`` fields for fitting (fit_steps, fit_batch_size, fit_lr, ...)."""

    def __post_init__(self) -> None:
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise ValueError(
                f"latent_adaptation.shard must be in [0, num_shards={self.num_shards}), got {self.shard}")

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> AdaptationConfig:
        config = _strict(cls, params, "latent_adaptation")
        train_config(config.train, "latent_adaptation")
        return config


@dataclass
class EvaluationConfig:
    """``evaluation``: reconstruction quality, capacity and the rate–distortion comparison."""

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
    draws, 0, collapse to the most likely cell, the background: 0.2% attribute accuracy against
    10% at 1 on the default run); models without a prior sample their per-bit predictions."""
    refine_strength: float = 0.5
    """Refine mode: fraction of the retrieved latent moved toward the text model's prediction (with a
    cell prior: the cells drawn again, at ``generate_temperature``; without: the bits flipped)."""
    library_images: int = 20000
    """Training latents that retrieve and refine search when evaluating generation (the first ones)."""
    max_capacity_ratio: float = 1.0
    """Warn when decoder parameter bits exceed this multiple of the latent bits."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> EvaluationConfig:
        return _strict(cls, params, "evaluation")


@dataclass
class AlignmentConfig:
    """``alignment``: the text-to-latent model, trained on the fitted latents of pretrain + adapt."""

    feature_cache: str = "data/04_feature/text_features"
    """MiniLM token states per caption (float16 shards), computed once and reused."""
    checkpoint_root: str = "data/06_models/checkpoints/alignment"
    """Checkpoints go to ``<root>/<fingerprint>/`` (resume after a kill, as in pretraining)."""
    train_splits: list[str] = field(default_factory=lambda: ["pretrain", "adapt"])
    """Splits whose captions and fitted latents the model is trained on."""
    val_split: str = "test"
    """Split evaluated during training (never trained on)."""
    max_captions: int | None = None
    """Cap on training captions (the first by sample id); null: all."""
    extra_wordings: int = 0
    """Synthetic source only: each training caption's scene worded this many more ways (the
    source's caption grammar, from the pair's attributes), as extra training captions of the same
    image, as Flickr8k has five per image. The val and test splits are never reworded."""
    model: dict[str, Any] = field(default_factory=dict)
    """``bitlatent.text.model.TextToLatentConfig`` fields (width, layers, code_bits, max_length...)."""
    train: dict[str, Any] = field(default_factory=dict)
    """``bitlatent.text.train.TextTrainConfig`` fields (epochs, batch_size, lr, contrastive_weight...)."""

    @classmethod
    def from_dict(cls, params: dict[str, Any]) -> AlignmentConfig:
        return _strict(cls, params, "alignment")
