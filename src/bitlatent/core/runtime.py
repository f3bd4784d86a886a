"""What the training loops share besides the model: device and mixed precision (``Runtime``),
the decoder's init and optimiser, reading a batch of uint8 images, the per-sample loss, the
learning-rate schedule and the per-epoch permutation. Used by ``train`` (``pretrain``,
``fit_latents``), in one process or several (``distributed``).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

import logging
import math
import platform
from contextlib import nullcontext
from functools import lru_cache
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .config import TrainConfig
from .decoder import BinaryLatentDecoder, DecoderConfig

__all__ = [
    "CURVE_KEYS",
    "Runtime",
    "cpu_has_native_bf16",
    "resolve_device",
    "init_decoder",
    "decoder_optimizer",
    "check_images",
    "row_indices",
    "load_batch",
    "mse_per_sample",
    "cosine_schedule",
    "epoch_permutation",
    "new_curves",
]

logger = logging.getLogger(__name__)

CURVE_KEYS = ("step", "loss", "psnr", "hardness", "wall_time")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls and convolutions natively (x86: AMX or AVX512-BF16).

    Without them PyTorch emulates bf16 and a training step gets many times slower, not faster. On
    other architectures this cannot be read from PyTorch, and bf16 is trusted.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return True
    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(probe() for probe in probes if probe is not None)


def resolve_device(name: str) -> torch.device:
    """``"auto"``: CUDA when available, else CPU; otherwise ``torch.device(name)``."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


class Runtime:
    """Device, autocast and gradient scaler, resolved once from the config (``device`` overrides
    ``cfg.device``, e.g. one GPU per process under DDP: ``distributed.ProcessGroup.device``)."""

    def __init__(self, cfg: TrainConfig, device: torch.device | None = None):
        self.device = device if device is not None else resolve_device(cfg.device)
        self.amp_dtype: torch.dtype | None = None
        if self.device.type == "cuda" and cfg.amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        elif self.device.type == "cpu" and cfg.cpu_bf16:
            if cpu_has_native_bf16():
                self.amp_dtype = torch.bfloat16
            else:
                _warn_emulated_bf16()
        self.scaler = torch.amp.GradScaler("cuda") if self.amp_dtype == torch.float16 else None
        self.memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format

    def autocast(self):
        if self.amp_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()``, through the gradient scaler when there is one; the optimizer's
        gradients come out unscaled (ready to clip), other leaves' stay scaled by ``grad_scale``."""
        if self.scaler is None:
            loss.backward()
            return
        self.scaler.scale(loss).backward()
        self.scaler.unscale_(optimizer)

    @property
    def grad_scale(self) -> float:
        """The factor gradients outside the optimizer carry after ``backward`` (1 without a scaler)."""
        return 1.0 if self.scaler is None else self.scaler.get_scale()

    def step(self, optimizer: torch.optim.Optimizer, parameters, grad_clip: float) -> None:
        """Clip the gradient norm of ``parameters`` to ``grad_clip`` (0: no clipping), then step
        (through the scaler, which skips steps with non-finite gradients)."""
        if grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(parameters, grad_clip)
        if self.scaler is None:
            optimizer.step()
            return
        self.scaler.step(optimizer)
        self.scaler.update()

    def decode(self, decoder: torch.nn.Module, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) -> (B, 3, H, W) float32, under autocast."""
        with self.autocast():
            out = decoder(z.contiguous(memory_format=self.memory_format))
        return out.float()


@lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    logger.warning("cpu_bf16 is set but this CPU has neither AMX nor AVX512-BF16: bf16 would be emulated "
                   "(many times slower), so training runs in float32 (figures may differ slightly from bf16 runs)")


def init_decoder(decoder: BinaryLatentDecoder | DecoderConfig | None, seed: int) -> BinaryLatentDecoder:
    """``decoder`` itself, or a fresh one built from a config (None: ``DecoderConfig()``) with torch
    seeded by ``seed``; the global RNG state is left as it was."""
    if isinstance(decoder, BinaryLatentDecoder):
        return decoder
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return BinaryLatentDecoder(decoder or DecoderConfig())


def decoder_optimizer(decoder: BinaryLatentDecoder, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam over the decoder's parameters (AdamW when ``decoder_weight_decay`` > 0)."""
    opt_cls = torch.optim.AdamW if cfg.decoder_weight_decay > 0 else torch.optim.Adam
    return opt_cls(decoder.parameters(), lr=cfg.decoder_lr, betas=cfg.decoder_betas, weight_decay=cfg.decoder_weight_decay)


def check_images(images: Any, image_size: int) -> None:
    """Raise unless ``images`` is a uint8 array-like (N, image_size, image_size, 3)."""
    shape, dtype = getattr(images, "shape", None), getattr(images, "dtype", None)
    if shape is None or len(shape) != 4 or shape[3] != 3 or np.dtype(dtype) != np.uint8:
        raise ValueError(f"images must be a uint8 array-like (N, H, W, 3), got {dtype} {shape}")
    if shape[1] != image_size or shape[2] != image_size:
        raise ValueError(f"images are {shape[1]}x{shape[2]}, the decoder makes {image_size}x{image_size}")


def row_indices(indices: np.ndarray | None, n_images: int) -> np.ndarray:
    """The image rows to train on as int64: ``indices``, or all ``n_images`` rows when None."""
    return np.arange(n_images, dtype=np.int64) if indices is None else np.asarray(indices, dtype=np.int64)


def load_batch(images: Any, rows: np.ndarray, device: torch.device) -> torch.Tensor:
    """Read ``rows`` of a uint8 (N, H, W, 3) array-like -> float32 (B, 3, H, W) in [0, 1] (B may be 0)."""
    if len(rows):
        batch = np.stack([np.asarray(images[int(i)]) for i in rows])  # (B, H, W, 3) uint8
    else:
        batch = np.zeros((0, *images.shape[1:]), np.uint8)
    return torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255.0)


def mse_per_sample(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The training loss, per image: (B, 3, H, W) x 2 -> (B,) mean squared error."""
    return F.mse_loss(out, target, reduction="none").flatten(1).mean(1)


def cosine_schedule(step: int, total: int, min_ratio: float, warmup: int = 0) -> float:
    """Learning-rate factor: linear warm-up, then cosine from 1 down to ``min_ratio``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(total - warmup, 1)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def epoch_permutation(seed: int, epoch: int, n: int) -> torch.Tensor:
    """The order of the ``n`` rows in ``epoch``: a function of (seed, epoch) only."""
    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return torch.randperm(n, generator=g)


def new_curves(*extra: str) -> dict[str, list[float]]:
    return {k: [] for k in (*CURVE_KEYS, *extra)}


def reuse_freed_memory() -> None:
    """Keep freed memory in the process for reuse (glibc only; elsewhere nothing changes).

    Fitting allocates and frees activations of tens of MB every step; glibc hands blocks above
    its mmap threshold (at most 32 MiB) back to the kernel on free and maps them again on the next
    step, so each step pays page faults (system time near user time in float32). A fixed 1 GiB
    threshold and trim threshold keep those blocks on the heap; the process's memory stays at its
    peak, which for a job that fits and then exits costs nothing (the CLI's encode / evaluate and
    the latent_adaptation node call it)."""
    name = ctypes.util.find_library("c")
    if sys.platform != "linux" or not name:
        return
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 1 << 30)
    mallopt(m_trim_threshold, 1 << 30)
