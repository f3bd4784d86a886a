"""Training the entropy model (``entropy_model.EntropyModel``) on (caption features, fitted latent bits) pairs.

Each step takes a batch of captions (the next slice of a per-epoch permutation), their cached MiniLM
token states and the latents of the images they describe; a ``caption_dropout`` fraction of the rows
reads the "no caption" token instead; the loss is ``EntropyModel.masked_bce``: nats per hidden bit
under a MaskGIT cosine masking. Adam with a linear warm-up and a cosine decay; gradient clipping.

Randomness comes from ``seed`` only (model init; per-epoch permutations from (seed, epoch); masks,
caption dropout and dropout from a forked global RNG whose state is checkpointed), so a resumed
run repeats what an uninterrupted one does. Checkpoints (every ``checkpoint_every`` steps and at the
end) are one safetensors file: model, optimiser moments, RNG state, curves, and the run's identity
(``runs.RunIdentity``); calling again with the same ``checkpoint_dir`` resumes, and a finished run
returns its result at once.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from tqdm.auto import tqdm

from bitlatent.config import ConfigGroup
from bitlatent.core.checkpoint import (
    load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint, subtable,
)
from bitlatent.core.runtime import cosine_schedule, epoch_permutation
from bitlatent.runs import RunIdentity, array_digest, code_digest
from bitlatent.text.train import AlignmentData

from .entropy_model import EntropyModel, EntropyModelConfig

__all__ = ["CHECKPOINT_FILE", "EntropyTrainConfig", "EntropyTrainResult", "entropy_identity", "train_entropy_model"]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "entropy_model_train.safetensors"
_CURVES = ("step", "epoch", "loss", "lr", "wall_time")


@dataclass
class EntropyTrainConfig(ConfigGroup):
    """Everything that steers ``train_entropy_model`` (on the CPU: the model is small)."""

    GROUP = "compression.train"

    seed: int = 0
    """Seed of the model init, the per-epoch permutations, the masks, caption dropout and dropout."""
    progress: bool = True
    """Show a tqdm bar with the loss."""
    checkpoint_every: int = 200
    """Write a checkpoint every this many steps (and at the end) when a checkpoint_dir is given."""
    steps: int = 500
    """Optimiser steps (batches of captions)."""
    batch_size: int = 64
    """Captions per step."""
    lr: float = 1e-3
    """Peak Adam learning rate."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    warmup_steps: int = 50
    """Linear warm-up of the learning rate."""
    min_lr_ratio: float = 0.05
    """Cosine decay down to this fraction of the peak learning rate."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this value; 0 disables."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1 or self.steps < 0 or self.checkpoint_every < 1:
            raise ValueError(f"{self.GROUP}: batch_size and checkpoint_every must be >= 1, steps >= 0")


_RESUME_FREE = frozenset({"progress", "checkpoint_every"})


@dataclass
class EntropyTrainResult:
    model: EntropyModel
    """The trained model (eval mode, CPU)."""
    curves: dict[str, list[float]]
    """Per step: step, epoch, loss (nats per hidden bit, of the batch), lr, wall_time (s, cumulative)."""


def entropy_identity(model_config: EntropyModelConfig, config: EntropyTrainConfig, data: AlignmentData) -> RunIdentity:
    """The identity of ``train_entropy_model(data, model_config, config)``: the configs, a digest of the
    training data and of ``bitlatent.codec``'s code. Its ``key`` names the run's checkpoint folder."""
    features = data.features
    digest = array_digest([data.latent_bits, data.image_index, features.offsets, features.pooled])
    return RunIdentity("entropy_model", {"train": config.to_dict(), "model": model_config.to_dict(),
                                         "data": {"n": len(data), "digest": digest}, "code": code_digest("codec")},
                       free=_RESUME_FREE)  # fmt: skip


def train_entropy_model(data: AlignmentData, model_config: EntropyModelConfig, config: EntropyTrainConfig,
                        checkpoint_dir: str | Path | None = None,
                        callback: Callable[[int, dict[str, float]], None] | None = None) -> EntropyTrainResult:  # fmt: skip
    """Train a fresh entropy model (``model_config``'s latent fields must match ``data.latent_bits``) on ``data``.
    ``callback(step, record)`` runs after each step (``step`` = steps done, after any checkpoint)."""
    C, h, w = data.latent_bits.shape[1:]
    if model_config.latent_shape != (C, h, w):
        raise ValueError(f"the model codes {model_config.latent_shape} latents, the data has {(C, h, w)}")
    if data.features.dim != model_config.text_dim:
        raise ValueError(f"features have width {data.features.dim}, the model reads {model_config.text_dim}")
    if len(data) == 0 and config.steps:
        raise ValueError("no training captions for the entropy model")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = EntropyModel(model_config)
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=config.lr, betas=config.betas)
    n = len(data)
    steps_per_epoch = max(math.ceil(n / config.batch_size), 1)
    identity = entropy_identity(model_config, config, data)
    curves: dict[str, list[float]] = {k: [] for k in _CURVES}
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None

    def save(step: int, wall: float) -> None:
        tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
        opt_tensors, opt_meta = optimizer_to_tensors(opt)
        tensors.update(opt_tensors)
        tensors["rng.cpu"] = torch.get_rng_state()
        state = {"step": step, "total_steps": config.steps, "wall_time": wall, "identity": identity.to_dict()}
        save_checkpoint(path, tensors, curves, {**state, **opt_meta})

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed + 1)  # masks, caption dropout, dropout; the checkpoint's state on resume
        start, wall_before = 0, 0.0
        if path is not None and path.exists():
            tensors, curves, state = load_checkpoint(path)
            identity.check(state["identity"], path)
            model.load_state_dict(subtable("model.", tensors))
            optimizer_from_tensors(opt, tensors, state)
            torch.set_rng_state(tensors["rng.cpu"])
            start, wall_before = state["step"], state["wall_time"]
            logger.info("entropy model: resumed from %s at step %d/%d", path, start, config.steps)
        bar = tqdm(total=config.steps, initial=start, desc="entropy model", disable=not config.progress,
                   dynamic_ncols=True)  # fmt: skip
        t0 = time.perf_counter()
        perm, perm_epoch = None, -1
        for step in range(start, config.steps):
            epoch, it = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(config.seed, epoch, n).numpy(), epoch
            rows = perm[it * config.batch_size: (it + 1) * config.batch_size]  # (B,) caption rows
            states, mask = data.features.padded(rows)  # (B, L, D), (B, L)
            bits = torch.from_numpy(data.latent_bits[data.image_index[rows]])  # (B, C, h, w) uint8
            uncaptioned = torch.rand(len(rows)) < model_config.caption_dropout  # (B,)
            for group in opt.param_groups:
                group["lr"] = lr = config.lr * cosine_schedule(step, config.steps, config.min_lr_ratio,
                                                               config.warmup_steps)  # fmt: skip
            loss = model.masked_bce(bits, states, mask, uncaptioned)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            wall = wall_before + time.perf_counter() - t0
            record = dict(zip(_CURVES, (step + 1, epoch, loss.item(), lr, wall)))
            for k, v in record.items():
                curves[k].append(float(v))
            bar.update(1)
            bar.set_postfix(loss=f"{curves['loss'][-1]:.4f}", refresh=False)
            if path is not None and ((step + 1) % config.checkpoint_every == 0 or step + 1 == config.steps):
                save(step + 1, wall)
            if callback is not None:
                callback(step + 1, record)
        bar.close()
        if path is not None and not path.exists():  # a zero-step run
            save(config.steps, wall_before)
    return EntropyTrainResult(model=model.eval(), curves=curves)

