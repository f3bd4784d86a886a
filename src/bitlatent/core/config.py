"""``TrainConfig``: everything that steers ``train.pretrain`` (in one process or under ``torchrun``)
and ``train.fit_latents``. Import it from ``bitlatent.core.train``.

The pipelines read it from ``pretraining.train`` (conf/base/parameters_decoder_pretraining.yml)
and ``latent_adaptation.train`` (conf/base/parameters_latent_adaptation.yml), which name every
hyperparameter; the runtime settings (device, precision, progress) are left to the environment.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitlatent.config import ConfigGroup

__all__ = ["TrainConfig", "RESUME_FREE"]


@dataclass
class TrainConfig(ConfigGroup):
    """Everything that steers ``pretrain`` and ``fit_latents``. Fractions refer to the run's steps.

    Pretraining and fitting both start every latent from one random pattern drawn from
    ``seed + 1`` (scaled by ``latent_init_std`` and ``fit_init_std``), so bits that no image
    content decides end alike across images and the bits become predictable from text. The loss is
    the per-pixel MSE. Pretraining anneals the decoder's input from the relaxation
    ``clamp(logit, -1, 1)`` to hard ±1 bits (``hard_from``); fitting uses hard bits from the start
    and keeps, per image, the bits with the lowest loss seen.
    """

    GROUP = "train"
    RETIRED = {
        "loss": "mse", "relaxation": "hardtanh", "temperature": 1.0, "soft_until": 0.0, "fit_soft_until": 0.0,
        "fit_hard_from": 0.0, "latent_init": "shared", "fit_keep_best": True, "fit_init_magnitude": 0.5,
    }  # fmt: skip

    # --- runtime
    seed: int = 0
    """Seed of the decoder init, the latent init and the per-epoch permutations. Fitting starts
    from pretraining's pattern only when both use the same seed."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ..."""
    amp: bool = True
    """Mixed precision on CUDA: bf16 where supported, else fp16 with a gradient scaler."""
    cpu_bf16: bool = False
    """bf16 autocast on CPU too: deterministic, and much faster on CPUs with AMX (Sapphire Rapids
    and later) at the same PSNR. Without AMX / AVX512-BF16, bf16 would be emulated and many times
    slower, so ``Runtime`` falls back to float32 there, with a warning."""
    channels_last: bool = True
    """Run convolutions in channels-last memory format (faster on CPU and on tensor cores)."""
    progress: bool = True
    """Show a tqdm progress bar with loss and PSNR."""
    checkpoint_every: int = 500
    """Write a checkpoint every this many steps (and at the end) when a checkpoint_dir is given."""

    # --- stage 1: joint pretraining of decoder + latents of a subset
    epochs: int = 40
    """Passes over the subset; each latent is updated once per epoch."""
    batch_size: int = 32
    """Images per pretraining step."""
    decoder_lr: float = 2e-3
    """Peak Adam learning rate of the decoder."""
    decoder_betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas of the decoder."""
    decoder_weight_decay: float = 0.0
    """Decoupled weight decay of the decoder (AdamW); 0 disables."""
    decoder_grad_clip: float = 1.0
    """Clip the decoder's gradient norm to this value; 0 disables."""
    warmup_steps: int = 200
    """Linear warm-up of the decoder's learning rate."""
    min_lr_ratio: float = 0.05
    """Cosine decay of both learning rates down to this fraction of their peak."""
    latent_lr: float = 0.5
    """Adam learning rate of the latent logits (logit units per update; logits live in [-1, 1]).
    High, because each latent is updated only once per epoch."""
    latent_betas: tuple[float, float] = (0.5, 0.9)
    """Adam betas of the latents. Low: a latent's updates are an epoch apart and the decoder moves."""
    latent_init_std: float = 0.3
    """Std of the initial logits (the random pattern every latent starts from)."""
    logit_clip: float = 1.0
    """Logits are clamped to [-clip, clip] after each update (so any bit can still flip); 0 disables.
    Pretraining and fitting alike."""
    rate_weight: float = 0.0
    """Weight of the rate term (``LatentTable.rate``) beside the per-pixel MSE, in pretraining and
    fitting alike: the price, in MSE, of moving every bit of a latent off the shared starting
    pattern. 0: bits are free (every latent costs its raw bits); > 0 trades PSNR for latents an
    entropy model codes in fewer bits and the text model's prior predicts better."""
    hard_from: float = 0.3
    """The decoder's input goes linearly from the relaxation (at the start) to hard bits (from this
    fraction of the steps on); 0: hard bits from the start."""

    # --- stage 2: fitting latents with the decoder frozen (also: encoding new images)
    fit_steps: int = 100
    """Full-chunk steps per chunk of images."""
    fit_batch_size: int = 256
    """Images per chunk (all fitted together; the latent table holds only this chunk)."""
    fit_lr: float = 1.0
    """Peak Adam learning rate of the logits while fitting, cosine-decayed over fit_steps. High
    (with ``logit_clip`` 1, a bit can flip in two steps), so bits jump out of poor local optima;
    photos fit better slowly (conf/flickr8k: 0.3 with betas (0.9, 0.99))."""
    fit_min_lr_ratio: float = 0.05
    """Final fraction of fit_lr."""
    fit_betas: tuple[float, float] = (0.5, 0.9)
    """Adam betas of the logits while fitting: short memory, so a bit's step follows its current
    gradient."""
    fit_init_std: float = 0.01
    """Std of the initial logits when fitting: pretraining's pattern scaled down, bits barely decided."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rate_weight < 0:
            raise ValueError(f"rate_weight must be >= 0, got {self.rate_weight}")
        if self.batch_size < 1 or self.fit_batch_size < 1 or self.epochs < 0 or self.fit_steps < 0:
            raise ValueError("batch sizes must be >= 1, epochs and fit_steps >= 0")


# Fields that may change between a run and its resumption (a checkpoint of a run that differs
# only in these is resumed; see ``bitlatent.runs.RunIdentity``).
RESUME_FREE = frozenset({"device", "amp", "cpu_bf16", "channels_last", "progress", "checkpoint_every"})
