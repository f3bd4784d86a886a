"""Training the text-to-latent model on (caption features, fitted image latent bits) pairs.

Each step takes a batch of captions (the next slice of a per-epoch permutation), their cached
token states, and the fitted latent bits of the images they describe. Training has two phases
over one step counter:

1. ``epochs`` passes minimising

       bce_weight          * BCE(bit logits, image latent bits)            predict the latent
     + contrastive_weight  * symmetric InfoNCE(text codes, image codes)    share a K-bit code
     + prior_weight        * CE(prior, the latent's cells)                 models with a cell prior

   (the prior is teacher-forced and reads the token states on its own). The contrastive gradient
   reaches the shared cell features and competes with the BCE, hence its small weight.
2. ``code_epochs`` passes of the contrastive term alone, on the two code heads only (an MLP over
   the mean cell features, computed once with the phase-1 model, beside the sentence embedding; a
   CNN over the latent): as many passes as retrieval needs, at the cost of the small heads alone.

The contrastive term scores caption i against image j by ``<t_i, v_j> / K`` over straight-through
codes: the forward pass uses the hard signs, for which this is exactly ``1 - 2 * Hamming / K`` (so
training sees the Hamming distances retrieval will use), the backward pass the gradient of
``tanh``. Captions of the same image in one batch are all positives of each other (multi-positive
InfoNCE), never negatives.

A fresh model's per-bit bias starts at the training latents' per-bit log-odds, so the first
predictions are the latents' bit frequencies.

Adam with a linear warm-up and a cosine decay in each phase (peak ``lr``, then ``code_lr``); gradient
clipping. One optimiser serves both phases: a phase's loss reaches only its own weights. Randomness comes from
``seed`` only (model init; per-epoch permutations from generators derived from (seed, epoch);
dropout from a forked global RNG whose state is checkpointed), so runs are deterministic on
CPU and a resumed run repeats exactly what an uninterrupted one does. Checkpoints (every
``checkpoint_every`` steps and at the end) are one safetensors file written atomically: model,
optimiser moments, RNG state and curves, plus JSON metadata. Calling again with the same
``checkpoint_dir`` resumes; a finished run returns its result at once.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from bitlatent.config import ConfigGroup
from bitlatent.core.checkpoint import (
    load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint, subtable,
)
from bitlatent.core.runtime import cosine_schedule, epoch_permutation, resolve_device
from bitlatent.runs import RunIdentity, code_digest

from .encoder import TextFeatures
from .losses import code_losses
from .retrieval_metrics import bit_accuracy, recall_at_k
from .model import TextToLatent, TextToLatentConfig

__all__ = [
    "TextTrainConfig",
    "AlignmentData",
    "TextTrainResult",
    "train_text_to_latent",
    "text_identity",
    "evaluate_alignment",
    "code_losses",
    "CHECKPOINT_FILE",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FILE = "text_to_latent_train.safetensors"


@dataclass
class TextTrainConfig(ConfigGroup):
    """Everything that steers ``train_text_to_latent``."""

    RETIRED = {"straight_through_codes": True, "init_bit_bias": True}

    # --- runtime
    seed: int = 0
    """Seed of the model init, the per-epoch permutations and dropout."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", ..."""
    progress: bool = True
    """Show a tqdm bar with the loss and the batch's bit accuracy."""
    checkpoint_every: int = 200
    """Write a checkpoint every this many steps (and at the end) when a checkpoint_dir is given."""
    eval_every: int = 0
    """Evaluate on the validation data every this many steps (and at the end); 0: only at the end."""
    eval_batch_size: int = 512
    """Captions per forward pass when evaluating."""

    # --- optimisation
    epochs: int = 30
    """Passes over the captions."""
    batch_size: int = 128
    """Captions per step (also the number of candidates of the contrastive term)."""
    lr: float = 1e-3
    """Peak Adam learning rate."""
    betas: tuple[float, float] = (0.9, 0.99)
    """Adam betas."""
    weight_decay: float = 0.0
    """Decoupled weight decay (AdamW); 0 gives plain Adam."""
    warmup_steps: int = 100
    """Linear warm-up of the learning rate."""
    min_lr_ratio: float = 0.05
    """Cosine decay down to this fraction of the peak learning rate."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this value; 0 disables."""

    code_epochs: int = 10
    """Passes over the captions of the second phase, which trains the text and image code heads
    alone (the symmetric InfoNCE); 0 leaves the codes untrained."""
    code_lr: float = 1e-3
    """Peak Adam learning rate of the code phase."""

    # --- loss
    bce_weight: float = 1.0
    """Weight of the binary cross-entropy on the image latent bits."""
    contrastive_weight: float = 0.1
    """Weight of the symmetric InfoNCE between text and image codes in the first phase; 0 leaves the
    codes to the second (and skips the image code's cost there)."""
    contrastive_temperature: float = 0.1
    """Temperature of InfoNCE on the code similarity ``<t, v> / K`` in [-1, 1] (``t``, ``v``: the ±1 codes)."""
    prior_weight: float = 1.0
    """Weight of the cell prior's cross-entropy (models with ``prior_layers`` > 0)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1 or self.epochs < 0 or self.code_epochs < 0 or self.checkpoint_every < 1:
            raise ValueError("batch_size and checkpoint_every must be >= 1, epochs and code_epochs >= 0")
        if self.contrastive_temperature <= 0:
            raise ValueError("contrastive_temperature must be > 0")


# Fields that may change between a run and its resumption.
_RESUME_FREE = frozenset({"device", "progress", "checkpoint_every", "eval_every", "eval_batch_size"})


@dataclass
class AlignmentData:
    """Captions paired with image latents: caption i describes image ``image_index[i]``."""

    features: TextFeatures
    """The N captions' token states and pooled vectors."""
    latent_bits: np.ndarray
    """uint8 (M, C, h, w): the fitted latent of each image (``unpack_bits`` of a latent shard)."""
    image_index: np.ndarray
    """int64 (N,): row of ``latent_bits`` for each caption."""

    def __post_init__(self) -> None:
        self.latent_bits = np.asarray(self.latent_bits)
        self.image_index = np.asarray(self.image_index, dtype=np.int64)
        if self.latent_bits.ndim != 4:
            raise ValueError(f"latent_bits must be (M, C, h, w), got {self.latent_bits.shape}")
        if len(self.image_index) != len(self.features):
            raise ValueError(f"{len(self.features)} captions but {len(self.image_index)} image indices")
        if len(self.image_index) and (self.image_index.min() < 0 or self.image_index.max() >= len(self.latent_bits)):
            raise ValueError("image_index points outside latent_bits")

    def __len__(self) -> int:
        return len(self.features)

    @classmethod
    def from_ids(
        cls,
        features: TextFeatures,
        caption_image_ids: Sequence[str],
        latent_bits: np.ndarray,
        latent_image_ids: Sequence[str],
    ) -> "AlignmentData":
        """Pair captions with latents by image id (e.g. the pairs table's ``image_id`` column and a
        latent shard's ids). Every caption's image must have a latent."""
        row = {str(x): i for i, x in enumerate(latent_image_ids)}
        missing = [x for x in caption_image_ids if str(x) not in row]
        if missing:
            raise ValueError(f"{len(missing)} caption(s) describe images without a latent, e.g. {missing[0]!r}")
        return cls(features, latent_bits, np.array([row[str(x)] for x in caption_image_ids], dtype=np.int64))


@dataclass
class TextTrainResult:
    model: TextToLatent
    """The trained model (eval mode, on the training device)."""
    curves: dict[str, list[float]]
    """Per step: step, epoch, loss, bce, contrastive, bit_accuracy (of the batch), lr,
    wall_time (s, cumulative). Per evaluation (with validation data): val_step, val_bit_accuracy,
    val_t2i_recall@1, @5, @10, val_t2i_median_rank."""


# ----------------------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate_alignment(model: TextToLatent, data: AlignmentData, batch_size: int = 512) -> dict[str, float]:
    """Bit accuracy of the predicted latents (argmax) and text -> image Recall@1/5/10 of the
    captions' text codes among the image codes of all ``data.latent_bits`` rows."""
    from .generate import image_codes, predict  # generate imports nothing from here

    pred = predict(model, data.features, batch_size=batch_size)
    target = data.latent_bits[data.image_index]  # (N, C, h, w)
    library = image_codes(model, data.latent_bits, batch_size=batch_size)  # (M, K)
    out = {"bit_accuracy": bit_accuracy(pred.bits, target)}
    out.update(recall_at_k(pred.code_bits, data.image_index, library, np.arange(len(data.latent_bits))))
    return out


# ----------------------------------------------------------------------------- helpers


@torch.no_grad()
def cell_summaries(model: TextToLatent, features: TextFeatures, batch_size: int, device: torch.device) -> torch.Tensor:
    """The mean cell features (N, d) of every caption, in eval mode (what the text code reads beside
    the sentence embedding), for the code phase: the cells no longer change there."""
    was_training = model.training
    model.eval()
    parts = []
    for lo in range(0, len(features), batch_size):
        states, mask = features.padded(np.arange(lo, min(lo + batch_size, len(features))), device)
        parts.append(model.cells(states, mask).mean(1))  # (b, d)
    model.train(was_training)
    return torch.cat(parts) if parts else torch.zeros(0, model.config.width, device=device)


def text_identity(model_config: TextToLatentConfig, config: TextTrainConfig, data: AlignmentData) -> RunIdentity:
    """The identity of ``train_text_to_latent(data, model_config, config)``: the configs, a cheap
    summary of the training set and the digest of ``bitlatent.text``. Its ``key`` names the run's
    checkpoint folder."""
    summary = {"n": len(data), "latents_shape": list(data.latent_bits.shape),
               "index_sum": int(data.image_index.sum()), "bits_sum": int(data.latent_bits.sum(dtype=np.int64)),
               "pooled_sum": round(float(data.features.pooled.astype(np.float64).sum()), 3)}  # fmt: skip
    return RunIdentity("text_to_latent", {"train": config.to_dict(), "model": model_config.to_dict(),
                                          "data": summary, "code": code_digest("text")}, free=_RESUME_FREE)


def _save_checkpoint(path: Path, model: TextToLatent, opt: torch.optim.Optimizer, curves: dict[str, list[float]],
                     state: dict[str, Any], device: torch.device) -> None:  # fmt: skip
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    opt_tensors, opt_meta = optimizer_to_tensors(opt)
    tensors.update(opt_tensors)
    tensors["rng.cpu"] = torch.get_rng_state()
    if device.type == "cuda":
        tensors["rng.cuda"] = torch.cuda.get_rng_state(device)
    save_checkpoint(path, tensors, curves, {**state, **opt_meta})


def _load_checkpoint(path: Path, model: TextToLatent, opt: torch.optim.Optimizer, device: torch.device
                     ) -> tuple[dict[str, list[float]], dict[str, Any]]:  # fmt: skip
    tensors, curves, state = load_checkpoint(path)
    model.load_state_dict(subtable("model.", tensors))
    optimizer_from_tensors(opt, {k: v.to(device) if not k.endswith(".step") else v for k, v in tensors.items()}, state)
    torch.set_rng_state(tensors["rng.cpu"])
    if device.type == "cuda" and "rng.cuda" in tensors:
        torch.cuda.set_rng_state(tensors["rng.cuda"], device)
    return curves, state


@torch.no_grad()
def rendered(model: TextToLatent, latent_bits: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor | None:
    """Every latent rendered once by the model's frozen decoder, float16 (M, 3, H, W) in [0, 1], for
    the code phase; None for a model whose image code reads the bits."""
    if model.renderer is None:
        return None
    parts = [model.render(torch.from_numpy(latent_bits[lo : lo + batch_size]).to(device)).half()
             for lo in range(0, len(latent_bits), batch_size)]  # fmt: skip
    return torch.cat(parts)


# ----------------------------------------------------------------------------- training


def train_text_to_latent(
    train: AlignmentData,
    model: TextToLatent | TextToLatentConfig | None = None,
    config: TextTrainConfig | None = None,
    *,
    val: AlignmentData | None = None,
    renderer: torch.nn.Module | None = None,
    checkpoint_dir: str | Path | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> TextTrainResult:
    """Train a text-to-latent model on ``train``; returns the model and the curves.

    ``model``: a config (a fresh model is built from ``config.seed``; its latent fields must match
    ``train.latent_bits``), an existing model to continue from, or None (a default config for the
    latents' shape). ``val``: evaluated every ``eval_every`` steps and at the end. ``renderer``: the
    decoder of the latents, which a fresh model with ``image_code_input`` "render" keeps a copy of.
    ``callback(step, record)`` runs after each step (``step`` = steps done).
    """
    cfg = config or TextTrainConfig()
    device = resolve_device(cfg.device)
    n, (C, h, w) = len(train), train.latent_bits.shape[1:]
    fresh = not isinstance(model, TextToLatent)
    if fresh:
        patch = 2 if h % 2 == 0 and w % 2 == 0 else 1
        mcfg = model or TextToLatentConfig(latent_h=h, latent_w=w, bits_per_cell=C, patch=patch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = TextToLatent(mcfg, renderer)
    mc = model.config
    if (mc.bits_per_cell, mc.latent_h, mc.latent_w) != (C, h, w):
        raise ValueError(f"model predicts ({mc.bits_per_cell}, {mc.latent_h}, {mc.latent_w}) latents, data has {(C, h, w)}")
    if train.features.dim != mc.text_dim:
        raise ValueError(f"features have width {train.features.dim}, the model reads {mc.text_dim}")
    if fresh and n:  # the per-bit bias starts at the latents' per-bit log-odds
        p = train.latent_bits[train.image_index].mean(0, dtype=np.float64).clip(1e-3, 1 - 1e-3)  # (C, h, w)
        with torch.no_grad():
            model.bit_bias.copy_(torch.from_numpy(np.log(p / (1 - p))).float())
    model.to(device).train()

    opt_cls = torch.optim.AdamW if cfg.weight_decay > 0 else torch.optim.Adam
    opt = opt_cls(model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(n / cfg.batch_size) if n else 0
    main_steps = cfg.epochs * steps_per_epoch  # phase 1: bits and prior; then phase 2: the codes
    total = main_steps + cfg.code_epochs * steps_per_epoch
    identity = text_identity(mc, cfg, train)
    keys = ("step", "epoch", "loss", "bce", "contrastive", "prior_ce", "bit_accuracy", "lr", "wall_time")
    val_keys = ("val_step", "val_bit_accuracy", "val_t2i_recall@1", "val_t2i_recall@5", "val_t2i_recall@10",
                "val_t2i_median_rank")
    curves: dict[str, list[float]] = {k: [] for k in (*keys, *(val_keys if val is not None else ()))}
    path = Path(checkpoint_dir) / CHECKPOINT_FILE if checkpoint_dir is not None else None

    def evaluate(step: int) -> None:
        if val is None or (curves["val_step"] and curves["val_step"][-1] == step):
            return
        model.eval()
        scores = evaluate_alignment(model, val, cfg.eval_batch_size)
        model.train()
        curves["val_step"].append(float(step))
        for k, v in scores.items():
            curves[f"val_{k}"].append(float(v))

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed + 2)  # dropout; replaced by the checkpoint's state on resume
        start, wall_before = 0, 0.0
        if path is not None and path.exists():
            curves, meta = _load_checkpoint(path, model, opt, device)
            identity.check(meta["identity"], path)
            start, wall_before = meta["step"], meta["wall_time"]
            logger.info("text_to_latent: resumed from %s at step %d/%d", path, start, total)

        def save(step: int, wall: float) -> None:
            state = {"step": step, "total_steps": total, "wall_time": wall, "identity": identity.to_dict()}
            _save_checkpoint(path, model, opt, curves, state, device)

        bar = tqdm(total=total, initial=start, desc="text-to-latent", disable=not cfg.progress, dynamic_ncols=True)
        t0 = time.perf_counter()
        perm, perm_epoch = None, -1
        summaries = renders = None  # the code phase's: every caption's mean cell features, every image rendered
        for step in range(start, total):
            epoch, it = divmod(step, steps_per_epoch)
            if epoch != perm_epoch:
                perm, perm_epoch = epoch_permutation(cfg.seed, epoch, n).numpy(), epoch
            rows = perm[it * cfg.batch_size : (it + 1) * cfg.batch_size]  # (B,) caption rows
            states, mask = train.features.padded(rows, device)  # (B, L, D), (B, L)
            image_rows = train.image_index[rows]  # (B,)
            target = torch.from_numpy(train.latent_bits[image_rows]).to(device)  # (B, C, h, w) uint8
            codes = step >= main_steps  # phase 2
            peak, done, steps = (cfg.code_lr, step - main_steps, total - main_steps) if codes else (cfg.lr, step, main_steps)
            lr = peak * cosine_schedule(done, steps, cfg.min_lr_ratio, cfg.warmup_steps)
            for group in opt.param_groups:
                group["lr"] = lr

            nothing = states.new_zeros(())
            image_ids = torch.from_numpy(image_rows).to(device)
            if codes:  # the code heads alone: only their weights get a gradient
                if summaries is None:
                    summaries = cell_summaries(model, train.features, cfg.eval_batch_size, device)  # (N, d)
                    renders = rendered(model, train.latent_bits, cfg.eval_batch_size, device)  # (M, 3, H, W) or None
                text_code = model.text_code_logits(summaries[torch.from_numpy(rows)], states, mask)  # (B, K)
                if renders is None:
                    image_code = model.image_code_logits(target, augment=True)  # (B, K)
                else:  # a training view of each image, rendered once
                    image_code = model.render_code_logits(renders[torch.from_numpy(image_rows)].float(), augment=True)
                contrastive = code_losses(text_code, image_code, image_ids, cfg.contrastive_temperature)
                loss, bce, prior_ce, acc = contrastive, nothing, nothing, float("nan")
            else:
                bit_logits, text_code = model(states, mask)  # (B, C, h, w), (B, K)
                bce = F.binary_cross_entropy_with_logits(bit_logits, target.float())
                contrastive = nothing
                if cfg.contrastive_weight > 0:
                    image_code = model.image_code_logits(target, augment=True)  # (B, K), a training view
                    contrastive = code_losses(text_code, image_code, image_ids, cfg.contrastive_temperature)
                prior_ce = model.prior.loss(states, mask, target) if model.prior is not None else nothing
                loss = cfg.bce_weight * bce + cfg.contrastive_weight * contrastive + cfg.prior_weight * prior_ce
                with torch.no_grad():
                    acc = ((bit_logits >= 0) == target.bool()).float().mean().item()

            opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()

            wall = wall_before + time.perf_counter() - t0
            record = {"step": step + 1, "epoch": epoch, "loss": loss.item(), "bce": bce.item(),
                      "contrastive": contrastive.item(), "prior_ce": prior_ce.item(), "bit_accuracy": acc, "lr": lr,
                      "wall_time": wall}  # fmt: skip
            for k, v in record.items():
                curves[k].append(float(v))
            bar.update(1)
            bar.set_postfix(phase="codes" if codes else "bits", loss=f"{record['loss']:.4f}", refresh=False)
            if cfg.eval_every and (step + 1) % cfg.eval_every == 0:
                evaluate(step + 1)
            if path is not None and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == total):
                if step + 1 == total:
                    evaluate(total)  # so a finished checkpoint holds the final evaluation
                save(step + 1, wall)
            if callback is not None:
                callback(step + 1, record)
        bar.close()
        evaluate(total)
        if path is not None and not path.exists():  # a zero-step run
            save(total, wall_before + time.perf_counter() - t0)
    return TextTrainResult(model=model.eval(), curves=curves)
