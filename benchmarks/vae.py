"""The fair opponent of ``vae_comparison.py``: a binary autoencoder ("binary VAE") with the *same*
latent grid, the same straight-through binarisation and the *same* ``BinaryLatentDecoder`` as the
decoder-only model. Only the benchmark uses it, so it lives beside the benchmark, outside the
package (a change here does not touch the code that pretraining checkpoints are keyed on).

    x (B, 3, H, W) in [0, 1]
      -> stem: k x k conv                                     (B, widths[-1], H, W)
      -> stage s = S-1..1: residual blocks, stride-2 conv     (B, widths[s-1], H/2^(S-s), ...)
      -> stage 0: residual blocks                             (B, widths[0], h, w)
      -> head: 1x1 conv -> logits                             (B, C, h, w)
      -> binarize (straight-through, annealed like pretrain)  (B, C, h, w) in {-1, +1}
      -> BinaryLatentDecoder                                  (B, 3, H, W) in [0, 1]

The encoder mirrors the decoder (same widths, reversed; same residual block). With a uniform
prior over the ``C*h*w`` bits the KL term of a binary VAE is a constant (the bit budget), so the
model is trained on the reconstruction loss alone: a deterministic binary autoencoder at exactly
the decoder-only model's bit budget. Encoding a new image is one encoder pass.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlatent.core.binary import binarize, hard_signs, hardness_at
from bitlatent.core.decoder import OUT_CHANNELS, BinaryLatentDecoder, DecoderConfig, ResBlock
from bitlatent.core.image_quality import psnr_from_mse
from bitlatent.core.runtime import Runtime, cosine_schedule, epoch_permutation, new_curves
from bitlatent.core.train import TrainConfig

__all__ = ["EncoderConfig", "BinaryEncoder", "BinaryVAE", "VAEResult", "train_vae", "encode_images"]


@dataclass
class EncoderConfig:
    """Encoder architecture. ``None`` fields copy the decoder's, so by default the encoder is the
    decoder's mirror image (same widths and blocks per stage, in reverse)."""

    widths: tuple[int, ...] | None = None
    """Channels per stage, from the latent resolution up to the image resolution (like the decoder)."""
    blocks_per_stage: tuple[int, ...] | None = None
    """Residual blocks per stage (like the decoder)."""
    kernel_size: int | None = None
    """Odd kernel size of the spatial convolutions."""

    def resolve(self, dec: DecoderConfig) -> "EncoderConfig":
        return EncoderConfig(
            widths=tuple(self.widths or dec.widths),
            blocks_per_stage=tuple(self.blocks_per_stage or dec.blocks_per_stage),
            kernel_size=self.kernel_size or dec.kernel_size,
        )

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class BinaryEncoder(nn.Module):
    """(B, 3, H, W) pixels in [0, 1] -> (B, C, h, w) real-valued logits."""

    def __init__(self, dec: DecoderConfig, enc: EncoderConfig | None = None):
        super().__init__()
        enc = (enc or EncoderConfig()).resolve(dec)
        if len(enc.widths) != dec.num_stages or len(enc.blocks_per_stage) != dec.num_stages:
            raise ValueError(f"encoder widths/blocks need {dec.num_stages} entries")
        self.config = enc
        k = enc.kernel_size
        self.stem = nn.Conv2d(OUT_CHANNELS, enc.widths[-1], k, padding=k // 2)
        stages = []
        for s in reversed(range(dec.num_stages)):  # image resolution first
            layers: list[nn.Module] = [ResBlock(enc.widths[s], k) for _ in range(enc.blocks_per_stage[s])]
            if s > 0:  # x1/2: (B, widths[s], r, r) -> (B, widths[s-1], r/2, r/2)
                layers += [nn.SiLU(), nn.Conv2d(enc.widths[s], enc.widths[s - 1], k, stride=2, padding=k // 2)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.SiLU(), nn.Conv2d(enc.widths[0], dec.bits_per_cell, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.stem(x * 2 - 1)  # (B, widths[-1], H, W)
        for stage in self.stages:
            y = stage(y)  # (B, widths[s], H/2^(S-1-s), ...)
        return self.head(y)  # (B, C, h, w) logits


class BinaryVAE(nn.Module):
    """Encoder -> straight-through bits -> the decoder-only model's ``BinaryLatentDecoder``."""

    def __init__(self, decoder: BinaryLatentDecoder | DecoderConfig, encoder: EncoderConfig | None = None):
        super().__init__()
        self.decoder = decoder if isinstance(decoder, BinaryLatentDecoder) else BinaryLatentDecoder(decoder)
        self.encoder = BinaryEncoder(self.decoder.config, encoder)

    def encode_logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder(x)  # (B, 3, H, W) -> (B, C, h, w)

    @torch.no_grad()
    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> hard signs (B, C, h, w) in {-1, +1}: the latent of a new image."""
        return hard_signs(self.encoder(x))

    def forward(self, x: torch.Tensor, hardness: float = 1.0) -> torch.Tensor:
        z = binarize(self.encoder(x), hardness)  # (B, C, h, w)
        return self.decoder(z)  # (B, 3, H, W)

    def num_parameters(self) -> dict[str, int]:
        enc = sum(p.numel() for p in self.encoder.parameters())
        dec = self.decoder.num_parameters()
        return {"encoder": enc, "decoder": dec, "total": enc + dec}


@dataclass
class VAEResult:
    model: BinaryVAE
    curves: dict[str, list[float]]
    """Per step: step, loss, psnr (batch), hardness, wall_time (s, callback time excluded)."""


def _to_unit(images: Any, rows: np.ndarray) -> torch.Tensor:
    batch = np.stack([np.asarray(images[int(i)]) for i in rows])  # (B, H, W, 3) uint8
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)


def train_vae(
    images: Any,
    model: BinaryVAE,
    config: TrainConfig | None = None,
    *,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> VAEResult:
    """Train encoder + decoder on uint8 (N, H, W, 3) ``images`` with pretrain's schedule (epochs
    of ``batch_size``, Adam at ``decoder_lr`` for both nets, warm-up + cosine, gradient clipping,
    soft -> hard annealing until ``hard_from``), on pretrain's device with its
    mixed precision (``Runtime``: CUDA when available, float32 on CPU). Time spent in ``callback``
    is excluded from ``wall_time``; on CUDA each step is synchronised by reading its loss."""
    cfg = config or TrainConfig()
    rt = Runtime(cfg)
    torch.manual_seed(cfg.seed)
    model.to(rt.device, memory_format=rt.memory_format)
    n = len(images)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    opt = torch.optim.Adam(model.parameters(), lr=cfg.decoder_lr, betas=cfg.decoder_betas)
    curves = new_curves()
    model.train()
    wall, step = 0.0, 0
    for epoch in range(cfg.epochs):
        perm = epoch_permutation(cfg.seed, epoch, n).numpy()
        for it in range(steps_per_epoch):
            t0 = time.perf_counter()
            x = _to_unit(images, perm[it * cfg.batch_size : (it + 1) * cfg.batch_size]).to(rt.device)  # (B, 3, H, W)
            hardness = hardness_at(step / max(total, 1), cfg.hard_from)
            lr = cfg.decoder_lr * cosine_schedule(step, total, cfg.min_lr_ratio, cfg.warmup_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            with rt.autocast():
                out = model(x.contiguous(memory_format=rt.memory_format), hardness)
            out = out.float()  # (B, 3, H, W)
            loss = mse = F.mse_loss(out, x)
            opt.zero_grad(set_to_none=True)
            rt.backward(loss, opt)
            rt.step(opt, model.parameters(), cfg.decoder_grad_clip)
            step += 1
            wall += time.perf_counter() - t0
            record = {"step": step, "loss": loss.item(), "psnr": psnr_from_mse(mse.item()),
                      "hardness": hardness, "wall_time": wall}
            for k, v in record.items():
                curves[k].append(float(v))
            if callback is not None:
                callback(step, record)
    return VAEResult(model=model.eval(), curves=curves)


@torch.no_grad()
def encode_images(model: BinaryVAE, images: Any, batch_size: int = 256) -> tuple[torch.Tensor, np.ndarray]:
    """uint8 (N, H, W, 3) -> (hard signs (N, C, h, w), per-image MSE (N,) of the reconstruction),
    float32 on the model's device (signs and MSEs come back on the CPU)."""
    model.eval()
    device = next(model.parameters()).device
    signs, mses = [], []
    for lo in range(0, len(images), batch_size):
        x = _to_unit(images, np.arange(lo, min(lo + batch_size, len(images)))).to(device)
        z = model.encode(x)
        out = model.decoder(z)
        signs.append(z.cpu())
        mses.append(F.mse_loss(out, x, reduction="none").flatten(1).mean(1).cpu().numpy())
    return torch.cat(signs), np.concatenate(mses).astype(np.float64)
