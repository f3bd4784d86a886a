"""The process group ``train.pretrain`` runs in: one process, or ``W`` under ``torchrun`` (DDP).

``pretrain`` is one code path. With no process group initialised it is the single-process run;
inside one (``init_from_env`` under ``torchrun``, nccl on GPUs, gloo on CPU) it spreads the same
run over ``W`` processes:

* **Partition.** Rank ``r`` owns the latent table rows ``r, r+W, r+2W, ...`` (``owned_rows``) and
  only their latents (logits and per-row Adam state). Every row starts from one pattern, so each
  rank's rows equal those rows of the single-process table.
* **Batches.** Every rank draws the same per-epoch permutation, takes the same global batch
  (``TrainConfig.batch_size`` is the *global* batch) and keeps the rows of it that it owns; images
  are read only for those rows.
* **Gradients.** The decoder is wrapped in ``DistributedDataParallel``; each rank backpropagates
  ``W/B * sum(own per-sample loss)``, so the all-reduced average is the gradient of the global
  batch mean and every rank's decoder stays equal. Each latent gets the gradient of its own loss.
* **Checkpoints and results.** Rank 0 gathers the table (``gather_rows``) and writes the checkpoint
  in the single-process format; on resumption it reads it and sends it to every rank
  (``broadcast``), which keeps its own rows. Rank 0 alone returns the whole table.

The result equals single-process ``pretrain`` with the same config and seed up to float rounding
(the all-reduce's summation order), checked with two gloo processes in ``tests/core/test_ddp.py``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from .config import TrainConfig
from .runtime import resolve_device

__all__ = ["ProcessGroup", "owned_rows", "init_from_env"]


def owned_rows(n: int, rank: int, world_size: int) -> np.ndarray:
    """Global table rows owned by ``rank``: ``rank, rank + W, ...`` (int64)."""
    return np.arange(rank, n, world_size, dtype=np.int64)


def init_from_env(backend: str | None = None, use_cuda: bool = False) -> bool:
    """Join the process group ``torchrun`` describes (``WORLD_SIZE`` > 1, ``env://``); True if joined
    here (the caller then destroys it). ``backend``: nccl on CUDA, gloo on CPU by default."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return False
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend or ("nccl" if use_cuda else "gloo"), init_method="env://")
    return True


@dataclass(frozen=True)
class ProcessGroup:
    """This process's place in the run: rank ``rank`` of ``world_size`` (``local_rank`` on its node)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def current(cls) -> ProcessGroup:
        """The initialised default process group, or a single process."""
        if dist.is_available() and dist.is_initialized():
            rank = dist.get_rank()
            return cls(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))
        return cls()

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def device(self, cfg: TrainConfig) -> torch.device:
        """``cfg.device``; under DDP on CUDA, the GPU of this process (one per process)."""
        device = resolve_device(cfg.device)
        if self.distributed and device.type == "cuda":
            if device.index is None:
                device = torch.device("cuda", self.local_rank)
            torch.cuda.set_device(device)
        return device

    def wrap(self, module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
        """``module`` in ``DistributedDataParallel`` under DDP (gradients averaged over ranks)."""
        if not self.distributed:
            return module
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(module, device_ids=[device.index] if device.type == "cuda" else None)

    def all_sum(self, values: list[float], device: torch.device) -> list[float]:
        """Each value summed over the ranks (float64)."""
        if not self.distributed:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj if self.rank == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def gather_rows(self, state: dict[str, torch.Tensor], n: int) -> dict[str, torch.Tensor] | None:
        """Rank 0: every rank's rows (``owned_rows``) of these ``(rows, ...)`` tensors, interleaved
        back into ``(n, ...)`` tensors on CPU; other ranks: None."""
        if not self.distributed:
            return state
        local = {k: v.detach().cpu() for k, v in state.items()}
        parts: list[Any] | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(local, parts, dst=0)
        if parts is None:
            return None
        full = {k: torch.empty((n, *v.shape[1:]), dtype=v.dtype) for k, v in local.items()}
        for r, part in enumerate(parts):
            for k, v in part.items():
                full[k][r :: self.world_size] = v
        return full

    def own_rows(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """This rank's rows of whole-table ``(n, ...)`` tensors."""
        if not self.distributed:
            return state
        return {k: v[self.rank :: self.world_size] for k, v in state.items()}

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()
