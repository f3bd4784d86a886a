"""Run by tests/core/test_ddp.py under ``torchrun``: ``train.pretrain`` in a gloo process group.

    torchrun --standalone --nproc_per_node=2 tests/core/ddp_worker.py DIR [STOP_AT]

Reads ``DIR/images.npy`` and ``DIR/config.json`` ({"train": ..., "decoder": ...}), checkpoints in
``DIR/checkpoints``; rank 0 writes ``DIR/result.safetensors`` (decoder weights, latent logits,
packed bits, the loss curve). With ``STOP_AT``, every rank stops after that step (a killed job).
"""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from bitlatent.core.distributed import ProcessGroup, init_from_env
from bitlatent.core.io import atomic_save_tensors
from bitlatent.core.decoder import DecoderConfig
from bitlatent.core.train import TrainConfig, pretrain


class Stop(Exception):
    pass


def main() -> int:
    folder = Path(sys.argv[1])
    stop_at = int(sys.argv[2]) if len(sys.argv) > 2 else None
    raw = json.loads((folder / "config.json").read_text())
    init_from_env("gloo")
    warnings.simplefilter("ignore")
    torch.set_num_threads(1)

    def stop(step: int, record: dict) -> None:
        if step == stop_at:
            raise Stop

    try:
        result = pretrain(np.load(folder / "images.npy", mmap_mode="r"), DecoderConfig.from_dict(raw["decoder"]),
                          TrainConfig.from_dict(raw["train"]), checkpoint_dir=folder / "checkpoints", callback=stop)
    except Stop:
        return 3  # every rank stops at the same step; the process group dies with the processes
    if ProcessGroup.current().rank == 0:
        tensors = {f"decoder.{k}": v for k, v in result.decoder.state_dict().items()}
        tensors.update(logits=result.latents.logits, packed=torch.from_numpy(result.latents.packed()),
                       loss=torch.tensor(result.curves["loss"], dtype=torch.float64))
        atomic_save_tensors(folder / "result.safetensors", tensors)
    else:
        assert result.latents is None
    dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
