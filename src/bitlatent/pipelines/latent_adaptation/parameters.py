"""The ``latent_adaptation`` parameter group (``conf/base/parameters_latent_adaptation.yml``).

Which splits are fitted, by how many jobs, with what fitting settings
(``bitlatent.core.train.TrainConfig``, nested).
A ``bitlatent.config.ConfigGroup``: unknown keys are an error, never ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bitlatent.config import ConfigGroup
from bitlatent.core.train import TrainConfig


@dataclass
class AdaptationConfig(ConfigGroup):
    """``latent_adaptation``: latents fitted for other splits with the decoder frozen."""

    GROUP = "latent_adaptation"

    shard: int = 0
    """This job's index, in ``[0, num_shards)``."""
    num_shards: int = 1
    """Jobs the work is split into; job k fits image shards k, k + n, k + 2n, ... of the splits."""
    splits: list[str] = field(default_factory=lambda: ["adapt", "test"])
    """Splits whose latents are fitted here."""
    train: TrainConfig = field(default_factory=TrainConfig)
    """Fitting (fit_steps, fit_batch_size, fit_lr, ...); ``seed`` and ``logit_clip`` as in pretraining."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_shards < 1 or not 0 <= self.shard < self.num_shards:
            raise ValueError(
                f"latent_adaptation.shard must be in [0, num_shards={self.num_shards}), got {self.shard}")
