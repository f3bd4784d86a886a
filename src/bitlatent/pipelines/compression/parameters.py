"""The ``compression`` parameter group (``conf/base/parameters_compression.yml``) as a typed config.

The entropy model (``EntropyModelConfig``) and its training (``EntropyTrainConfig``), both nested, the
captions it is trained on and the split its streams are measured on.
A ``bitlatent.config.ConfigGroup``: unknown keys are an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bitlatent.codec.entropy_model import EntropyModelConfig
from bitlatent.codec.entropy_train import EntropyTrainConfig
from bitlatent.config import ConfigGroup


@dataclass
class CompressionConfig(ConfigGroup):
    """``compression``: the entropy model, trained on the fitted latents of pretrain + adapt, and the
    stream sizes of the test split's latents."""

    GROUP = "compression"

    feature_cache: str = "data/04_feature/text_features"
    """MiniLM token states per caption (the alignment pipeline's cache: captions are encoded once)."""
    max_length: int = 48
    """Tokens per caption ([CLS] and [SEP] included); a shared feature cache must have been made with the same."""
    checkpoint_root: str = "data/06_models/checkpoints/compression"
    """Checkpoints go to ``<root>/<run key>/`` (``codec.entropy_train.entropy_identity``; resume after a kill)."""
    train_splits: list[str] = field(default_factory=lambda: ["pretrain", "adapt"])
    """Splits whose captions and fitted latents the model is trained on."""
    test_split: str = "test"
    """Split whose latents are compressed for the metrics (never trained on)."""
    stages: int = 8
    """Coding stages (one model call each, ``codec.schedule``) of the measured streams."""
    model: EntropyModelConfig = field(default_factory=EntropyModelConfig)
    """The model's architecture; its latent fields come from the fitted latents, not from here."""
    train: EntropyTrainConfig = field(default_factory=EntropyTrainConfig)
    """Its training (steps, batch_size, lr, ...)."""
