"""The ``alignment`` parameter group (``conf/base/parameters_alignment.yml``) as a typed config.

The text-to-latent model (``TextToLatentConfig``) and its training (``TextTrainConfig``), both
nested, and the captions they are trained on.
A ``bitlatent.config.ConfigGroup``: unknown keys are an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bitlatent.config import ConfigGroup
from bitlatent.text.model import TextToLatentConfig
from bitlatent.text.train import TextTrainConfig


@dataclass
class AlignmentConfig(ConfigGroup):
    """``alignment``: the text-to-latent model, trained on the fitted latents of pretrain + adapt."""

    GROUP = "alignment"

    feature_cache: str = "data/04_feature/text_features"
    """MiniLM token states per caption (float16 shards), computed once and reused."""
    checkpoint_root: str = "data/06_models/checkpoints/alignment"
    """Checkpoints go to ``<root>/<run key>/`` (``text.train.text_identity``; resume after a kill, as in pretraining)."""
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
    model: TextToLatentConfig = field(default_factory=TextToLatentConfig)
    """The model's architecture (width, layers, code_bits, max_length, ...). Its latent fields and
    ``encoder_revision`` are not read from here: they come from the trained decoder and the encoder."""
    train: TextTrainConfig = field(default_factory=TextTrainConfig)
    """Its training (epochs, code_epochs, batch_size, lr, ...)."""
