"""Training: (a) ``pretrain`` the decoder jointly with the latents of a subset; (b) ``fit_latents``
for any images with the decoder frozen (this is also how a new image is "encoded").

Images come in as a uint8 array-like (N, H, W, 3), e.g. a ``np.memmap`` of a shard; only the
rows of the current batch (pretraining) or chunk (fitting) are read and turned into floats.

Pretraining goes in **epochs over the subset**: every step takes the next batch of a per-epoch
permutation, so each latent is updated once per epoch (the number of updates per latent, not of
optimiser steps, is what limits joint training). Latents use their own Adam (per-row state, see
``LatentTable``) with a much higher learning rate than the decoder. Bits are annealed from the
relaxation ``clamp(logit, -1, 1)`` to hard ±1 (``hardness_at``); the straight-through estimator
carries gradients. Every latent starts from one random pattern (``LatentTable``).

Fitting processes the images in chunks of ``fit_batch_size``; each chunk gets ``fit_steps``
full-chunk steps: straight-through hard bits, a high cosine-decayed learning rate, and per-image
"keep best" over the steps, so the result settles and never drifts down. The loss is the
per-pixel MSE throughout.

Randomness comes from ``seed`` only, through generators derived from (seed, epoch) and
(seed, chunk), so runs are deterministic on CPU and a resumed run repeats exactly what an
uninterrupted one does. Checkpoints (every ``checkpoint_every`` steps and at the end) are one
safetensors file written atomically (temporary file + ``os.replace``): tensors (weights,
optimiser moments, latent table, curves) plus JSON metadata (step, configs, scaler state).
Killing a run loses only the steps after its last checkpoint; calling again with the same
``checkpoint_dir`` resumes, and a finished run returns its result at once.

On CUDA, mixed precision (bf16, or fp16 with a gradient scaler) is used when ``amp``; on CPU,
float32 unless ``cpu_bf16`` (bf16 autocast: much faster on CPUs with AMX, still deterministic).

``TrainConfig`` lives in ``config.py``, the checkpoint format in ``checkpoint.py``, device / AMP /
batch / schedule helpers in ``runtime.py``; all public names are importable from here.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from tqdm.auto import tqdm

from .binary import LatentSpec, binarize, bits_to_signs, hardness_at, unpack_bits
from .capacity import capacity_report
from bitlatent.runs import RunIdentity, array_digest, code_digest, weights_digest

from .checkpoint import load_checkpoint, optimizer_from_tensors, optimizer_to_tensors, save_checkpoint, subtable
from .config import RESUME_FREE, TrainConfig
from .decoder import BinaryLatentDecoder, DecoderConfig
from .distributed import ProcessGroup, owned_rows
from .latents import LatentTable
from .image_quality import psnr_from_mse
from .runtime import (Runtime, check_images, cosine_schedule, decoder_optimizer, epoch_permutation, init_decoder,
                      load_batch, mse_per_sample, new_curves, row_indices)  # fmt: skip

__all__ = [
    "TrainConfig",
    "PretrainResult",
    "FitResult",
    "pretrain",
    "pretrain_identity",
    "fit_latents",
    "decode_packed",
    "PRETRAIN_CHECKPOINT",
    "FIT_CHECKPOINT",
]

logger = logging.getLogger(__name__)

PRETRAIN_CHECKPOINT = "pretrain.safetensors"
FIT_CHECKPOINT = "fit.safetensors"
GIVEN_BITS_LOGIT = 0.5
"""|Initial logit| of bits given to ``fit_latents`` (``init_packed``): half the logit clip, so the
first steps can still flip the bits the image disagrees with."""


@dataclass
class PretrainResult:
    decoder: BinaryLatentDecoder
    """The trained decoder (eval mode)."""
    latents: LatentTable | None
    """The subset's latents, row i <-> ``indices[i]``; export with ``latents.packed()``. None on the
    ranks other than 0 of a distributed run."""
    curves: dict[str, list[float]]
    """Per step: step, loss, psnr (of the batch), hardness, wall_time (s, cumulative)."""
    indices: np.ndarray
    """Rows of ``images`` that were trained, in table order."""


@dataclass
class FitResult:
    packed: np.ndarray
    """uint8 (N, spec.bytes_per_image): the fitted bits, row i <-> ``indices[i]``."""
    mse: np.ndarray
    """float64 (N,): MSE of each image decoded from its fitted bits (float32 decoder)."""
    spec: LatentSpec
    curves: dict[str, list[float]]
    """Per step: step, loss and psnr (of the chunk), hardness (always 1), wall_time; plus chunk."""
    indices: np.ndarray

    @property
    def psnr(self) -> float:
        """PSNR over the whole set (from the mean MSE)."""
        return psnr_from_mse(float(self.mse.mean()))

    @property
    def psnr_mean_per_image(self) -> float:
        return float(np.mean(10 * np.log10(1.0 / np.maximum(self.mse, 1e-12))))


# ----------------------------------------------------------------------------- stage 1


def pretrain_identity(
    decoder_config: DecoderConfig, config: TrainConfig, images: Any, indices: np.ndarray | None = None,
    data: Any = None,
) -> RunIdentity:
    """The identity of ``pretrain(images, decoder_config, config, indices=indices)``: the configs, the
    images' count and shape, ``data`` (what the caller knows of the images, e.g. their shard index)
    and the digest of ``bitlatent.core``. Its ``key`` names the run's checkpoint folder."""
    indices = row_indices(indices, len(images))
    return RunIdentity("pretrain", {
        "train": config.to_dict(), "decoder": decoder_config.to_dict(), "n": len(indices),
        "indices_sum": int(indices.sum()), "images_shape": list(images.shape), "data": data,
        "code": code_digest("core")}, free=RESUME_FREE)  # fmt: skip


def pretrain(
    images: Any,
    decoder: BinaryLatentDecoder | DecoderConfig | None = None,
    config: TrainConfig | None = None,
    *,
    indices: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    data: Any = None,
) -> PretrainResult:
    """Jointly train a decoder and the latents of ``images[indices]`` (all rows by default).

    ``decoder``: a config (a fresh decoder is built from ``config.seed``), an existing decoder to
    continue from, or None for ``DecoderConfig()``. ``callback(step, record)`` runs after each
    step (``step`` = steps done). ``data`` joins the run's identity (``pretrain_identity``): a
    checkpoint in ``checkpoint_dir`` is resumed only by the same run. Returns the decoder, the
    latent table and the curves.

    Inside an initialised process group (``torchrun``) every rank calls it with the same arguments
    and trains its share of the latents (``core.distributed``); rank 0 writes the checkpoints and
    alone gets the whole latent table (``latents`` is None on the other ranks).
    """
    cfg = config or TrainConfig()
    group = ProcessGroup.current()
    rt = Runtime(cfg, device=group.device(cfg))
    decoder = init_decoder(decoder, cfg.seed)
    spec = decoder.latent_spec
    check_images(images, spec.image_size)
    indices = row_indices(indices, len(images))
    n = len(indices)
    decoder.to(rt.device, memory_format=rt.memory_format).train()
    if group.rank == 0:
        capacity_report(spec, n, decoder)

    table = LatentTable(  # this rank's rows of the table (all of them in one process)
        len(owned_rows(n, group.rank, group.world_size)), spec, init_std=cfg.latent_init_std, seed=cfg.seed + 1,
        device=rt.device, betas=cfg.latent_betas, clip=cfg.logit_clip or None,
    )  # fmt: skip
    model = group.wrap(decoder, rt.device)
    opt = decoder_optimizer(decoder, cfg)
    steps_per_epoch = math.ceil(n / cfg.batch_size)
    total = cfg.epochs * steps_per_epoch
    identity = pretrain_identity(decoder.config, cfg, images, indices, data)

    curves, start, wall_before = new_curves("epoch"), 0, 0.0
    path = Path(checkpoint_dir) / PRETRAIN_CHECKPOINT if checkpoint_dir is not None else None
    saved = group.broadcast(load_checkpoint(path) if group.rank == 0 and path is not None and path.exists() else None)
    if saved is not None:
        tensors, curves, state = saved
        identity.check(state["identity"], path)
        decoder.load_state_dict(subtable("decoder.", tensors))
        table.load_state_dict(group.own_rows(subtable("latents.", tensors)))
        optimizer_from_tensors(opt, tensors, state["optimizer"])
        if rt.scaler is not None and state.get("scaler"):
            rt.scaler.load_state_dict(state["scaler"])
        start, wall_before = state["step"], state["wall_time"]
        logger.info("pretrain: resumed from %s at step %d/%d", path, start, total)

    def save(step: int, wall: float) -> None:  # on every rank: the table is gathered to rank 0
        rows = group.gather_rows(table.state_dict(), n)
        if group.rank != 0:
            return
        opt_tensors, opt_meta = optimizer_to_tensors(opt)
        tensors = {**{f"decoder.{k}": v for k, v in decoder.state_dict().items()},
                   **{f"latents.{k}": v for k, v in rows.items()}, **opt_tensors}  # fmt: skip
        state = {"step": step, "total_steps": total, "wall_time": wall, "seed": cfg.seed,
                 "identity": identity.to_dict(), "optimizer": opt_meta,
                 "scaler": rt.scaler.state_dict() if rt.scaler is not None else None}  # fmt: skip
        save_checkpoint(path, tensors, curves, state)

    bar = tqdm(total=total, initial=start, desc="pretrain", disable=not cfg.progress or group.rank != 0,
               dynamic_ncols=True)  # fmt: skip
    t0 = time.perf_counter()
    perm, perm_epoch = None, -1
    for step in range(start, total):
        epoch, it = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(cfg.seed, epoch, n), epoch
        batch = perm[it * cfg.batch_size : (it + 1) * cfg.batch_size]  # (B,) global rows, the same on every rank
        mine = batch[batch % group.world_size == group.rank] if group.distributed else batch  # (b,) owned
        x = load_batch(images, indices[mine.numpy()], rt.device)  # (b, 3, H, W)
        rows = (mine // group.world_size).to(rt.device)  # (b,) rows of this rank's table

        hardness = hardness_at(step / max(total, 1), cfg.hard_from)
        lr_factor = cosine_schedule(step, total, cfg.min_lr_ratio, cfg.warmup_steps)
        for param_group in opt.param_groups:
            param_group["lr"] = cfg.decoder_lr * lr_factor
        logits = table.gather(rows)  # (b, C, h, w), leaf
        z = binarize(logits, hardness)  # (b, C, h, w)
        empty = len(rows) == 0  # a rank that owns no row of the batch still joins the all-reduce,
        if empty:  # with a zero-weighted dummy sample (empty batches break some backward kernels)
            z = torch.zeros(1, *spec.shape, device=rt.device)
        out = rt.decode(model, z)  # (b, 3, H, W)
        if empty:
            mse, loss = out.new_zeros(0), out.sum() * 0.0
        else:
            mse = mse_per_sample(out, x)  # (b,)
            objective = mse + cfg.rate_weight * table.rate(logits) if cfg.rate_weight else mse  # (b,)
            # under DDP, W/B * sum(own) averages over the W ranks to the mean over the global batch
            loss = objective.sum() * (group.world_size / len(batch)) if group.distributed else objective.mean()

        opt.zero_grad(set_to_none=True)
        rt.backward(loss, opt)
        if empty:
            latent_grad = torch.zeros_like(logits)
        else:  # the latents are not in opt: their gradient is still scaled
            latent_grad = logits.grad / rt.grad_scale
        rt.step(opt, decoder.parameters(), cfg.decoder_grad_clip)
        if group.distributed:  # the global batch's MSE sum, and whether any rank's latent gradient is not finite
            mse_sum, bad = group.all_sum([mse.detach().sum().item(), float(not bool(torch.isfinite(latent_grad).all()))],
                                         rt.device)  # fmt: skip
            finite, loss_value = bad == 0, mse_sum / len(batch)
            mse_value = loss_value
        else:
            finite, loss_value, mse_value = bool(torch.isfinite(latent_grad).all()), loss.item(), mse.mean().item()
        if finite and not empty:
            # d(mean loss)/d latent * B = d(own loss)/d latent: independent of the batch size (and of W)
            lr = cfg.latent_lr * cosine_schedule(step, total, cfg.min_lr_ratio)
            table.step(rows, latent_grad * (len(batch) / group.world_size if group.distributed else len(rows)), lr)

        wall = wall_before + time.perf_counter() - t0
        record = {"step": step + 1, "loss": loss_value, "psnr": psnr_from_mse(mse_value), "hardness": hardness,
                  "wall_time": wall, "epoch": epoch}  # fmt: skip
        for k, v in record.items():
            curves[k].append(float(v))
        bar.update(1)
        bar.set_postfix(loss=f"{loss_value:.5f}", psnr=f"{record['psnr']:.2f}", hard=f"{hardness:.2f}", refresh=False)
        if path is not None and ((step + 1) % cfg.checkpoint_every == 0 or step + 1 == total):
            save(step + 1, wall)
        if callback is not None:
            callback(step + 1, record)
    bar.close()
    if path is not None and total == 0 and saved is None:  # zero-step run
        save(total, wall_before)
    latents: LatentTable | None = table
    if group.distributed:
        rows = group.gather_rows(table.state_dict(), n)
        latents = None
        if rows is not None:
            latents = LatentTable(n, spec, init_std=cfg.latent_init_std, seed=cfg.seed + 1,
                                  betas=cfg.latent_betas, clip=cfg.logit_clip or None)  # fmt: skip
            latents.load_state_dict(rows)
        group.barrier()
    return PretrainResult(decoder=decoder.eval(), latents=latents, curves=curves, indices=indices)


# ----------------------------------------------------------------------------- stage 2


def fit_latents(
    decoder: BinaryLatentDecoder,
    images: Any,
    config: TrainConfig | None = None,
    *,
    indices: np.ndarray | None = None,
    checkpoint_dir: str | Path | None = None,
    callback: Callable[[int, dict[str, float]], None] | None = None,
    init_packed: np.ndarray | None = None,
) -> FitResult:
    """Fit binary latents for ``images[indices]`` with the decoder frozen; returns packed bits.

    Chunks of ``fit_batch_size`` images are fitted one after another (memory bounded by a chunk),
    each for ``fit_steps`` full-chunk steps. ``init_packed`` (N, bytes), row i for ``indices[i]``:
    start from these bits (logits ``±GIVEN_BITS_LOGIT``) instead of pretraining's pattern, to refine
    a latent retrieved or predicted from text. ``callback(global_step, record)`` runs after each step.
    """
    cfg = config or TrainConfig()
    rt = Runtime(cfg)
    spec = decoder.latent_spec
    check_images(images, spec.image_size)
    indices = row_indices(indices, len(images))
    n = len(indices)
    chunk = cfg.fit_batch_size
    n_chunks = math.ceil(n / chunk)
    total = n_chunks * cfg.fit_steps
    was_training = decoder.training
    decoder.to(rt.device, memory_format=rt.memory_format).eval()
    grad_flags = [p.requires_grad for p in decoder.parameters()]
    for p in decoder.parameters():
        p.requires_grad_(False)  # gradients flow to the latents only
    if init_packed is not None and (init_packed.shape != (n, spec.bytes_per_image) or init_packed.dtype != np.uint8):
        got = f"{init_packed.dtype} {init_packed.shape}"
        raise ValueError(f"init_packed must be uint8 ({n}, {spec.bytes_per_image}), got {got}")
    identity = RunIdentity("fit", {
        "train": cfg.to_dict(), "decoder": decoder.config.to_dict(), "n": n, "indices_sum": int(indices.sum()),
        "images_shape": list(images.shape), "weights": weights_digest(decoder.state_dict()),
        "init": None if init_packed is None else array_digest([init_packed]), "code": code_digest("core")},
        free=RESUME_FREE)  # fmt: skip

    packed = np.zeros((n, spec.bytes_per_image), dtype=np.uint8)
    mse_out = np.zeros(n, dtype=np.float64)
    curves, wall_before = new_curves("chunk"), 0.0
    start_chunk, start_step, table_state = 0, 0, None
    path = Path(checkpoint_dir) / FIT_CHECKPOINT if checkpoint_dir is not None else None
    if path is not None and path.exists():
        tensors, curves, state = load_checkpoint(path)
        identity.check(state["identity"], path)
        packed[:] = tensors["packed"].numpy()
        mse_out[:] = tensors["mse"].numpy()
        start_chunk, start_step, wall_before = state["chunk"], state["chunk_step"], state["wall_time"]
        table_state = subtable("latents.", tensors) if start_step > 0 else None
        logger.info("fit_latents: resumed from %s at chunk %d step %d", path, start_chunk, start_step)

    def save(c: int, s: int, table: LatentTable | None, wall: float) -> None:
        tensors = {"packed": torch.from_numpy(packed), "mse": torch.from_numpy(mse_out)}
        if table is not None and s > 0:
            tensors.update({f"latents.{k}": v for k, v in table.state_dict().items()})
        state = {"chunk": c, "chunk_step": s, "n_chunks": n_chunks, "wall_time": wall, "seed": cfg.seed,
                 "identity": identity.to_dict()}
        save_checkpoint(path, tensors, curves, state)

    bar = tqdm(total=total, initial=start_chunk * cfg.fit_steps + start_step, desc="fit latents",
               disable=not cfg.progress, dynamic_ncols=True)  # fmt: skip
    t0 = time.perf_counter()
    try:
        for c in range(start_chunk, n_chunks):
            lo, hi = c * chunk, min((c + 1) * chunk, n)
            x = load_batch(images, indices[lo:hi], rt.device)  # (B, 3, H, W), the whole chunk
            table = LatentTable(
                hi - lo, spec, init_std=cfg.fit_init_std, seed=cfg.seed + 1,  # pretraining's pattern, scaled down
                device=rt.device, betas=cfg.fit_betas, clip=cfg.logit_clip or None, track_best=True,
            )  # fmt: skip
            if init_packed is not None:
                table.logits.copy_(bits_to_signs(unpack_bits(init_packed[lo:hi], spec)) * GIVEN_BITS_LOGIT)
            first = 0
            if c == start_chunk and table_state is not None:
                table.load_state_dict(table_state)
                first = start_step

            def on_step(s: int, record: dict[str, float]) -> None:
                step = c * cfg.fit_steps + s + 1
                record = {"step": step, **record, "wall_time": wall_before + time.perf_counter() - t0, "chunk": c}
                for k, v in record.items():
                    curves[k].append(float(v))
                bar.update(1)
                bar.set_postfix(loss=f"{record['loss']:.5f}", psnr=f"{record['psnr']:.2f}", refresh=False)
                if path is not None and step % cfg.checkpoint_every == 0 and s + 1 < cfg.fit_steps:
                    save(c, s + 1, table, record["wall_time"])
                if callback is not None:
                    callback(step, record)

            given = init_packed is not None and first == 0
            mse_out[lo:hi] = _fit_chunk(decoder, rt, cfg, x, table, first, check_start=given, on_step=on_step)
            packed[lo:hi] = table.packed()  # the best bits seen
            if path is not None:
                save(c + 1, 0, None, wall_before + time.perf_counter() - t0)
    finally:
        bar.close()
        for p, flag in zip(decoder.parameters(), grad_flags):
            p.requires_grad_(flag)
        decoder.train(was_training)
    if path is not None and n_chunks == 0:
        save(0, 0, None, wall_before)
    return FitResult(packed=packed, mse=mse_out, spec=spec, curves=curves, indices=indices)


def _fit_chunk(
    decoder: BinaryLatentDecoder,
    rt: Runtime,
    cfg: TrainConfig,
    x: torch.Tensor,
    table: LatentTable,
    first: int,
    check_start: bool,
    on_step: Callable[[int, dict[str, float]], None],
) -> np.ndarray:
    """Fit the latents in ``table`` to the images ``x`` (B, 3, H, W), steps ``first..fit_steps-1``,
    the decoder frozen. Returns the (B,) float64 MSE of the chosen bits (float32 decoder)."""
    rows = torch.arange(len(table), device=rt.device)
    # fp16 autocast (CUDA without bf16): scale the loss so that small gradients do not underflow
    loss_scale = 1024.0 if rt.amp_dtype == torch.float16 else 1.0

    def rate_of(logits: torch.Tensor) -> torch.Tensor:  # (B,) the rate term of hard bits (0 without one)
        return cfg.rate_weight * table.off_reference(logits.detach()) if cfg.rate_weight else logits.new_zeros(len(logits))

    def hard_loss() -> torch.Tensor:  # (B,) loss of the current logits' hard bits
        with torch.no_grad():
            return mse_per_sample(rt.decode(decoder, bits_to_signs(table.logits >= 0)), x) + rate_of(table.logits)

    if check_start:  # given initial bits are a candidate too
        table.update_best(rows, hard_loss(), table.logits)
    for s in range(first, cfg.fit_steps):
        logits = table.gather(rows)  # (B, C, h, w), leaf
        out = rt.decode(decoder, binarize(logits))  # (B, 3, H, W), hard bits
        mse = mse_per_sample(out, x)  # (B,)
        objective = mse + cfg.rate_weight * table.rate(logits) if cfg.rate_weight else mse  # (B,)
        (objective.sum() * loss_scale).backward()  # each latent gets the gradient of its own loss
        table.update_best(rows, mse + rate_of(logits), logits)  # the loss of exactly these hard bits
        grad = logits.grad / loss_scale
        if bool(torch.isfinite(grad).all()):
            table.step(rows, grad, cfg.fit_lr * cosine_schedule(s, cfg.fit_steps, cfg.fit_min_lr_ratio))
        loss = mse.mean().item()
        on_step(s, {"loss": loss, "psnr": psnr_from_mse(loss), "hardness": 1.0})

    table.update_best(rows, hard_loss(), table.logits)  # the bits after the last update are a candidate too
    with torch.no_grad():
        signs = table.signs()  # (B, C, h, w), the best bits
        final = decoder(signs.contiguous(memory_format=rt.memory_format)).float()  # float32, no autocast
        return mse_per_sample(final, x).double().cpu().numpy()


# ----------------------------------------------------------------------------- decoding


@torch.no_grad()
def decode_packed(
    decoder: BinaryLatentDecoder, packed: np.ndarray, batch_size: int = 256, device: str | torch.device | None = None
) -> np.ndarray:
    """Packed latents uint8 (N, bytes) -> images uint8 (N, H, W, 3), float32 decoder."""
    spec = decoder.latent_spec
    device = torch.device(device) if device is not None else next(decoder.parameters()).device
    was_training = decoder.training
    decoder.eval()
    out = np.empty((len(packed), spec.image_size, spec.image_size, 3), dtype=np.uint8)
    for lo in range(0, len(packed), batch_size):
        signs = bits_to_signs(unpack_bits(packed[lo : lo + batch_size], spec)).to(device)  # (B, C, h, w)
        img = decoder(signs)  # (B, 3, H, W)
        out[lo : lo + batch_size] = (img.float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    decoder.train(was_training)
    return out
