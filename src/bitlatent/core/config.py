"""``TrainConfig``: everything that steers ``train.pretrain`` and ``train.fit_latents`` (also read
by ``ddp.pretrain_distributed`` and ``vae.train_vae``). Import it from ``bitlatent.core.train``.
"""

from __future__ import annotations

from dataclasses import dataclass

from bitlatent.config import ConfigGroup

__all__ = ["TrainConfig", "RESUME_FREE"]


@dataclass
class TrainConfig(ConfigGroup):
    """Everything that steers ``pretrain`` and ``fit_latents``. Fractions refer to the run's steps."""

    # --- runtime
    seed: int = 0
    """Seed of the decoder init, the latent init and the per-epoch permutations."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ..."""
    amp: bool = True
    """Mixed precision on CUDA: bf16 where supported, else fp16 with a gradient scaler."""
    cpu_bf16: bool = False
    """bf16 autocast on CPU too: deterministic, and on CPUs with AMX (Sapphire Rapids and later)
    2.6x faster pretraining steps with the same PSNR (2-core Xeon, 64x64, batch 32: 216 -> 83 ms;
    held-out 22.75 dB either way). Without AMX / AVX512-BF16, bf16 would be emulated and many
    times slower, so ``Runtime`` falls back to float32 there, with a warning."""
    channels_last: bool = True
    """Run convolutions in channels-last memory format (faster on CPU and on tensor cores)."""
    loss: str = "mse"
    """Per-pixel loss: "mse" or "l1". PSNR in the curves is always computed from the MSE."""
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
    High, because each latent is updated only once per epoch (0.05 -> 0.2 -> 0.5 gave
    21.8 -> 23.2 -> 23.4 dB on held-out images in the same run)."""
    latent_betas: tuple[float, float] = (0.5, 0.9)
    """Adam betas of the latents. Low: a latent's updates are an epoch apart and the decoder moves."""
    latent_init_std: float = 0.3
    """Std of the initial logits (random initial bits)."""
    latent_init: str = "shared"
    """"independent": each latent starts from its own random bits; "shared": all latents (in
    pretraining and in fitting) start from one random pattern, so bits that no image content
    decides end alike across images and the bits become predictable from text."""
    logit_clip: float = 1.0
    """Logits are clamped to [-clip, clip] after each update (so any bit can still flip); 0 disables."""
    relaxation: str = "hardtanh"
    """Soft relaxation used while annealing: "hardtanh" (clamp(l/T, -1, 1)) or "tanh" (tanh(l/T))."""
    temperature: float = 1.0
    """T of the relaxation (also sets the straight-through gradient's window)."""
    soft_until: float = 0.0
    """Pretraining: fully soft latents up to this fraction of the steps..."""
    hard_from: float = 0.3
    """...then a linear ramp to hard bits, hard from this fraction on (0: hard from the start)."""

    # --- stage 2: fitting latents with the decoder frozen (also: encoding new images)
    fit_steps: int = 100
    """Full-chunk steps per chunk of images."""
    fit_batch_size: int = 256
    """Images per chunk (all fitted together; the latent table holds only this chunk)."""
    fit_lr: float = 1.0
    """Peak Adam learning rate of the logits while fitting, cosine-decayed over fit_steps. High
    (with ``logit_clip`` 1, a bit can flip in two steps), so bits jump out of poor local optima:
    on a decoder pretrained on 9,051 synthetic images, 100 steps reached 26.4 dB where the earlier
    0.2 with betas (0.9, 0.99) reached 24.1 (and 26.8 in 600 steps). Photos fit better slowly:
    conf/flickr8k keeps 0.3 and (0.9, 0.99) (-0.2 dB with these)."""
    fit_min_lr_ratio: float = 0.05
    """Final fraction of fit_lr."""
    fit_betas: tuple[float, float] = (0.5, 0.9)
    """Adam betas of the logits while fitting: short memory, so a bit's step follows its current
    gradient (at lr 0.5: (0.9, 0.99) 24.9 dB, (0.5, 0.9) 25.8 dB on the decoder above)."""
    fit_init_std: float = 0.01
    """Std of the initial logits when fitting (near zero: undecided bits)."""
    fit_soft_until: float = 0.0
    """Fitting: fully soft latents up to this fraction of fit_steps..."""
    fit_hard_from: float = 0.0
    """...then a ramp, hard bits from this fraction on (0: hard from the start). The decoder ends
    pretraining on hard bits, so soft inputs are foreign to it: hard from the start fits best."""
    fit_init_magnitude: float = 0.5
    """|initial logit| when fitting starts from given bits (``init_packed``, e.g. predicted from text)."""
    fit_keep_best: bool = True
    """Keep, per image, the hard bits with the lowest loss seen during the hard phase."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.latent_init not in ("independent", "shared"):
            raise ValueError(f"latent_init must be 'independent' or 'shared', got {self.latent_init!r}")
        if self.loss not in ("mse", "l1"):
            raise ValueError(f"unknown loss {self.loss!r}")
        if self.batch_size < 1 or self.fit_batch_size < 1 or self.epochs < 0 or self.fit_steps < 0:
            raise ValueError("batch sizes must be >= 1, epochs and fit_steps >= 0")


# Fields that may change between a run and its resumption (a checkpoint of a run that differs
# only in these is resumed; see ``checkpoint.check_resume``).
RESUME_FREE = frozenset({"device", "amp", "cpu_bf16", "channels_last", "progress", "checkpoint_every"})
