"""The ``pretraining`` parameter group (``conf/base/parameters_decoder_pretraining.yml``).

How the pipeline trains the decoder (``bitlatent.core.train.TrainConfig``, nested) and where its
checkpoints go.
A ``bitlatent.config.ConfigGroup``: unknown keys are an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bitlatent.config import ConfigGroup
from bitlatent.core.train import TrainConfig


@dataclass
class PretrainingConfig(ConfigGroup):
    """``pretraining``: the decoder and the pretrain split's latents, trained jointly."""

    GROUP = "pretraining"

    checkpoint_root: str = "data/06_models/checkpoints/pretraining"
    """Checkpoints go to ``<root>/<run key>/`` (``core.train.pretrain_identity``): the key covers the
    configs, the data and the code, so a rerun with the same inputs resumes (or returns at once) and
    any change starts afresh."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Stage 1 training (epochs, batch_size, decoder_lr, latent_lr, ...)."""
