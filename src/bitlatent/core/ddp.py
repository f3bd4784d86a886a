"""Multi-process decoder pretraining (``torchrun`` + DDP): the same run as ``train.pretrain``,
spread over ``W`` processes (GPUs, or CPU processes with gloo).

    torchrun --nproc_per_node=N -m bitlatent.core.ddp --images IMAGES.npy --out DIR [--config CFG.json]

**Partition.** Rank ``r`` owns the table rows ``r, r+W, r+2W, ...`` (row ``i`` <-> ``images[indices[i]]``)
and only their latents: its ``LatentTable`` holds ``ceil((n-r)/W)`` rows with their own per-row
Adam state, never another rank's rows.

**Batches.** Every rank draws the *same* per-epoch permutation as ``pretrain`` (same seed), takes
the same global batch ``perm[it*B:(it+1)*B]`` (``B = config.batch_size``, the *global* batch), and
keeps the rows of that batch it owns (about ``B/W`` per rank; the union over ranks is exactly the
single-process batch). Images are read only for those rows.

**Gradients.** The decoder is wrapped in ``DistributedDataParallel`` (nccl on CUDA, gloo on CPU),
which averages gradients over ranks. Rank ``r`` backpropagates ``W/B * sum(own per-sample loss)``,
so the average is ``1/B * sum over the global batch`` = the gradient of the single-process batch mean.
Gradient clipping and Adam then see identical gradients on all ranks, so the decoders stay equal.
Each latent gets the gradient of its own loss (as in ``pretrain``) and is updated locally.

**Equivalence.** With the same seed, decoder config and ``TrainConfig``, the decoder weights and
latent logits after a W-process run equal those of single-process ``pretrain`` up to float
rounding (summation order of the all-reduce), tested with two gloo processes in
``tests/core/test_ddp.py``. Latent init matches too: every row starts from the one pattern of
``LatentTable(n, seed=seed+1)``, which each rank draws itself.

**Output** (rank 0): ``save_decoder`` (``decoder.safetensors`` + ``decoder.json``), ``latents.npy``
(packed uint8 ``(n, bytes)``, rows gathered from all ranks in global row order), ``indices.npy``
(the image rows, ``int64 (n,)``), ``latent_spec.json`` and ``curves.json`` (global loss / PSNR per step).

Not supported here (yet): resuming from a checkpoint; a multi-process run is restarted from scratch.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from .binary import binarize, hardness_at, logits_to_bits, pack_bits
from .capacity import capacity_report
from .config import TrainConfig
from .decoder import BinaryLatentDecoder, DecoderConfig, save_decoder
from .io import atomic_save_npy, atomic_write_json
from .latents import LatentTable
from .metrics import psnr_from_mse
from .runtime import (Runtime, check_images, cosine_schedule, decoder_optimizer, epoch_permutation, init_decoder,
                      load_batch, mse_per_sample, new_curves, resolve_device, row_indices)  # fmt: skip

__all__ = ["DistributedPretrainResult", "pretrain_distributed", "owned_rows", "main"]

logger = logging.getLogger(__name__)

LATENTS_FILE = "latents.npy"
INDICES_FILE = "indices.npy"
SPEC_FILE = "latent_spec.json"
CURVES_FILE = "curves.json"


@dataclass
class DistributedPretrainResult:
    decoder: BinaryLatentDecoder
    """The trained decoder (unwrapped, eval mode); identical on every rank."""
    packed: np.ndarray | None
    """uint8 (n, bytes): all ranks' latents in global row order (row i <-> ``indices[i]``); rank 0 only."""
    logits: torch.Tensor | None
    """float32 (n, C, h, w) on CPU in global row order, when ``gather_logits`` (rank 0 only); for tests."""
    local_table: LatentTable
    """This rank's latents: row j <-> global row ``rank + j * world_size``."""
    curves: dict[str, list[float]]
    """Per step, over the global batch: step, loss, psnr, hardness, wall_time, epoch."""
    indices: np.ndarray
    rank: int
    world_size: int


# ----------------------------------------------------------------------------- helpers
# Batches, loss, schedule, permutation and AMP are runtime.py's, the same code as train.pretrain's.


def owned_rows(n: int, rank: int, world_size: int) -> np.ndarray:
    """Global table rows owned by ``rank``: ``rank, rank + W, ...`` (int64)."""
    return np.arange(rank, n, world_size, dtype=np.int64)


def _local_latent_table(n: int, rank: int, world_size: int, spec, cfg: TrainConfig, device: torch.device) -> LatentTable:
    """This rank's rows of ``LatentTable(n, spec, seed=cfg.seed + 1, ...)``, bit-identical to them:
    every row starts from the same pattern, so the rank draws it for its own rows only."""
    return LatentTable(
        len(owned_rows(n, rank, world_size)), spec, init_std=cfg.latent_init_std, seed=cfg.seed + 1, device=device,
        betas=cfg.latent_betas, clip=cfg.logit_clip or None,
    )  # fmt: skip


def _setup() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from an initialised process group or torchrun's env; 1 process otherwise."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    return 0, 1, 0


def _device(cfg: TrainConfig, local_rank: int, world_size: int) -> torch.device:
    device = resolve_device(cfg.device)
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", local_rank)  # one GPU per process
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ----------------------------------------------------------------------------- training


def pretrain_distributed(
    images: Any,
    decoder: BinaryLatentDecoder | DecoderConfig | None = None,
    config: TrainConfig | None = None,
    *,
    indices: np.ndarray | None = None,
    out_dir: str | Path | None = None,
    gather_logits: bool = False,
    callback: Callable[[int, dict[str, float]], None] | None = None,
) -> DistributedPretrainResult:
    """``train.pretrain`` over all processes of the default process group (or one process if none).

    Call it on every rank with the same arguments (``images`` may be a memmap: each rank reads only
    its rows). ``config.batch_size`` is the *global* batch. Returns on every rank; ``packed``
    (and ``logits`` when ``gather_logits``) only on rank 0, which also writes ``out_dir``.
    Checkpointing/resume of ``pretrain`` is not implemented here.
    """
    cfg = config or TrainConfig()
    rank, world, local_rank = _setup()
    rt = Runtime(cfg, device=_device(cfg, local_rank, world))
    device, scaler = rt.device, rt.scaler

    decoder = init_decoder(decoder, cfg.seed)
    spec = decoder.latent_spec
    check_images(images, spec.image_size)
    indices = row_indices(indices, len(images))
    n = len(indices)
    decoder.to(device, memory_format=rt.memory_format).train()
    if rank == 0:
        capacity_report(spec, n, decoder)

    table = _local_latent_table(n, rank, world, spec, cfg, device)  # rows r, r+W, ... of the global table
    model: torch.nn.Module = decoder
    if world > 1:
        model = DistributedDataParallel(decoder, device_ids=[device.index] if device.type == "cuda" else None)
    opt = decoder_optimizer(decoder, cfg)
    B = cfg.batch_size
    steps_per_epoch = math.ceil(n / B)
    total = cfg.epochs * steps_per_epoch
    curves = new_curves("epoch")

    t0 = time.perf_counter()
    perm, perm_epoch = None, -1
    for step in range(total):
        epoch, it = divmod(step, steps_per_epoch)
        if epoch != perm_epoch:
            perm, perm_epoch = epoch_permutation(cfg.seed, epoch, n), epoch
        batch = perm[it * B : (it + 1) * B]  # (B,) global rows, the same on every rank
        mine = batch[batch % world == rank]  # (b,) the rows this rank owns, b ~ B / W
        local = (mine // world).to(device)  # (b,) rows of the local table
        x = load_batch(images, indices[mine.numpy()], device)  # (b, 3, H, W)

        hardness = hardness_at(step / max(total, 1), cfg.hard_from)
        lr_factor = cosine_schedule(step, total, cfg.min_lr_ratio, cfg.warmup_steps)
        for group in opt.param_groups:
            group["lr"] = cfg.decoder_lr * lr_factor
        logits = table.gather(local)  # (b, C, h, w), leaf
        z = binarize(logits, hardness)  # (b, C, h, w)
        empty = len(local) == 0  # this rank owns no row of the batch: it still joins the all-reduce
        if empty:  # with a zero-weighted dummy sample (empty batches break some backward kernels)
            z = torch.zeros(1, *spec.shape, device=device)
        out = rt.decode(model, z)  # (b, 3, H, W)
        if empty:
            mse = out.new_zeros(0)
            loss = out.sum() * 0.0
        else:
            mse = mse_per_sample(out, x)  # (b,)
            # DDP averages over W ranks: W/B * sum(own) averages to the mean over the global batch.
            loss = mse.sum() * (world / len(batch))

        opt.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.unscale_(opt)
            latent_grad = logits.grad / scaler.get_scale() if not empty else torch.zeros_like(logits)
        else:
            loss.backward()
            latent_grad = logits.grad if not empty else torch.zeros_like(logits)
        # global batch stats + "all latent gradients finite" (pretrain skips the latent update otherwise)
        stats = torch.tensor(
            [mse.detach().sum().item(), float(not bool(torch.isfinite(latent_grad).all()))],
            dtype=torch.float64, device=device,
        )  # fmt: skip
        if world > 1:
            dist.all_reduce(stats)
        if cfg.decoder_grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(decoder.parameters(), cfg.decoder_grad_clip)
        if scaler is not None:
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
        if stats[1].item() == 0 and len(local):
            # d(loss)/d latent * B / W = d(own loss)/d latent, as in pretrain
            lr = cfg.latent_lr * cosine_schedule(step, total, cfg.min_lr_ratio)
            table.step(local, latent_grad * (len(batch) / world), lr)

        loss_value = stats[0].item() / len(batch)  # the mean MSE over the global batch
        record = {"step": step + 1, "loss": loss_value, "psnr": psnr_from_mse(loss_value), "hardness": hardness,
                  "wall_time": time.perf_counter() - t0, "epoch": epoch}  # fmt: skip
        for k, v in record.items():
            curves[k].append(float(v))
        if rank == 0 and (step + 1) % max(cfg.checkpoint_every, 1) == 0:
            logger.info("ddp pretrain step %d/%d loss %.5f psnr %.2f", step + 1, total, loss_value, record["psnr"])
        if callback is not None:
            callback(step + 1, record)

    decoder.eval()
    packed, logits_all = _gather_latents(table, n, rank, world, gather_logits)
    if rank == 0 and out_dir is not None:
        _save_outputs(Path(out_dir), decoder, packed, indices, curves, world, cfg)
    if world > 1:
        dist.barrier()
    return DistributedPretrainResult(decoder=decoder, packed=packed, logits=logits_all, local_table=table,
                                     curves=curves, indices=indices, rank=rank, world_size=world)  # fmt: skip


def _gather_latents(table: LatentTable, n: int, rank: int, world: int, gather_logits: bool):
    """Packed bits (and optionally float logits) of all ranks, interleaved back to global row order, on rank 0."""
    bits = torch.from_numpy(logits_to_bits(table.logits))  # (n_r, C, h, w) uint8, CPU
    local = {"bits": bits, "logits": table.logits.detach().cpu() if gather_logits else None}
    if world > 1:
        parts: list[Any] = [None] * world
        dist.all_gather_object(parts, local)  # small: packed-size uint8 per row (+ logits in tests)
    else:
        parts = [local]
    if rank != 0:
        return None, None
    full_bits = torch.empty(n, *bits.shape[1:], dtype=torch.uint8)
    full_logits = torch.empty(n, *bits.shape[1:]) if gather_logits else None
    for r, part in enumerate(parts):
        full_bits[r::world] = part["bits"]
        if gather_logits:
            full_logits[r::world] = part["logits"]
    return pack_bits(full_bits.numpy(), table.spec.bit_order), full_logits


def _save_outputs(out: Path, decoder, packed, indices, curves, world: int, cfg: TrainConfig) -> None:
    out.mkdir(parents=True, exist_ok=True)
    save_decoder(decoder, out, extra={"pretrain": {"world_size": world, "train": cfg.to_dict(), "n": int(len(indices))}})
    atomic_save_npy(out / LATENTS_FILE, packed)
    atomic_save_npy(out / INDICES_FILE, indices)
    atomic_write_json(out / SPEC_FILE, decoder.latent_spec.to_dict())
    atomic_write_json(out / CURVES_FILE, curves)


# ----------------------------------------------------------------------------- entry point


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Distributed decoder pretraining; run under torchrun.")
    parser.add_argument("--images", required=True, help="uint8 (N, H, W, 3) .npy (memory-mapped)")
    parser.add_argument("--out", required=True, help="output folder (written by rank 0)")
    parser.add_argument("--config", help='JSON: {"train": {TrainConfig fields}, "decoder": {DecoderConfig fields}} '
                        "or a flat TrainConfig dict")  # fmt: skip
    parser.add_argument("--backend", default=None, help="nccl (default on CUDA) or gloo (default on CPU)")
    parser.add_argument("--save-logits", action="store_true", help="also write the float logits, logits.npy (tests, debugging)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    raw = json.loads(Path(args.config).read_text()) if args.config else {}
    if "train" in raw or "decoder" in raw:
        cfg, dec_cfg = TrainConfig.from_dict(raw.get("train", {})), DecoderConfig.from_dict(raw.get("decoder", {}))
    else:
        cfg, dec_cfg = TrainConfig.from_dict(raw), DecoderConfig()
    cfg.progress = False

    initialised = False
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        use_cuda = cfg.device != "cpu" and torch.cuda.is_available()
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend=args.backend or ("nccl" if use_cuda else "gloo"), init_method="env://")
        initialised = True
    try:
        images = np.load(args.images, mmap_mode="r")
        result = pretrain_distributed(images, dec_cfg, cfg, out_dir=args.out, gather_logits=args.save_logits)
        if result.rank == 0 and args.save_logits:
            np.save(Path(args.out) / "logits.npy", result.logits.numpy())
        if result.rank == 0:
            logger.info("wrote %s: decoder + %d packed latents (world size %d)", args.out, len(result.indices), result.world_size)
    finally:
        if initialised:
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
