"""Distributed pretraining: ``train.pretrain`` in two gloo CPU processes under torchrun gives the
same decoder and latents as in one process (same seed, same global batches), up to float
tolerance, and a killed two-process run resumes from its checkpoint to the same result."""

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bitlatent.core.binary import LatentSpec
from bitlatent.core.capacity import CapacityWarning
from bitlatent.core.decoder import DecoderConfig
from bitlatent.core.distributed import ProcessGroup, owned_rows
from bitlatent.core.io import load_tensors
from bitlatent.core.latents import LatentTable
from bitlatent.core.train import PRETRAIN_CHECKPOINT, TrainConfig, pretrain
from bitlatent.core.checkpoint import load_checkpoint

from .conftest import synthetic_images

WORKER = Path(__file__).with_name("ddp_worker.py")
N_IMAGES = 33  # odd: the ranks own 17 and 16 rows
DECODER = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(32, 16, 16), blocks_per_stage=(1, 1, 1))
# global batch 8 over 33 rows: steps of 8, 8, 8, 8, 1 rows, split unevenly between the two ranks;
# the last step of each epoch leaves one rank with no row (it joins the all-reduce with zero gradients)
TRAIN = TrainConfig(
    device="cpu", epochs=2, batch_size=8, warmup_steps=2, progress=False, decoder_lr=5e-3, latent_lr=0.2,
    hard_from=0.5, seed=3, checkpoint_every=4,
)  # fmt: skip
ATOL = 1e-5  # decoder weights (observed 2-process max |diff| ~6e-8)
# Latent logits: Adam normalises each latent's gradient, which amplifies rounding differences of
# near-zero gradients (observed ~2e-6 with 2 processes, ~5e-5 with 3); wrong batching gives ~1e-1.
LOGIT_ATOL = 2e-4


def _pretrain_single(cfg: TrainConfig = TRAIN, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CapacityWarning)
        return pretrain(synthetic_images(N_IMAGES, seed=1), DECODER, cfg, **kw)


def _torchrun(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(WORKER), str(folder), *args]  # fmt: skip
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _folder(tmp: Path) -> Path:
    np.save(tmp / "images.npy", synthetic_images(N_IMAGES, seed=1))
    (tmp / "config.json").write_text(json.dumps({"train": TRAIN.to_dict(), "decoder": DECODER.to_dict()}))
    return tmp


@pytest.fixture(scope="module")
def single():
    return _pretrain_single()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """Two gloo processes, killed after step 6 (last checkpoint: step 4), then run again: resumed."""
    folder = _folder(tmp_path_factory.mktemp("ddp"))
    killed = _torchrun(folder, "6")
    assert killed.returncode != 0 and not (folder / "result.safetensors").exists(), killed.stderr[-3000:]
    _, _, state = load_checkpoint(folder / "checkpoints" / PRETRAIN_CHECKPOINT)
    assert state["step"] == 4
    proc = _torchrun(folder)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    tensors, _ = load_tensors(folder / "result.safetensors")
    return folder, tensors


def test_owned_rows_partition_the_table():
    parts = [owned_rows(10, r, 3) for r in range(3)]
    assert parts[0].tolist() == [0, 3, 6, 9] and parts[2].tolist() == [2, 5, 8]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))


@pytest.mark.parametrize("n,world", [(37, 3), (9001, 2)])
def test_each_ranks_rows_start_as_the_single_process_rows(n, world):
    spec = LatentSpec(h=4, w=4, bits_per_cell=4, image_size=16)
    kw = dict(init_std=TRAIN.latent_init_std, seed=TRAIN.seed + 1)
    full = LatentTable(n, spec, **kw).state_dict()
    for r in range(world):
        local = LatentTable(len(owned_rows(n, r, world)), spec, **kw).state_dict()
        mine = ProcessGroup(rank=r, world_size=world).own_rows(full)
        for k in full:
            assert torch.equal(local[k], mine[k]), k


def test_one_process_is_not_distributed():
    assert ProcessGroup.current() == ProcessGroup(0, 1, 0) and not ProcessGroup.current().distributed


def test_two_processes_match_single_process_after_a_resume(two_process_run, single):
    folder, result = two_process_run
    ref = {k: v.float() for k, v in single.decoder.state_dict().items()}
    init = _pretrain_single(TrainConfig(**{**TRAIN.to_dict(), "epochs": 0})).decoder.state_dict()
    moved = max((ref[k] - init[k]).abs().max().item() for k in ref)
    assert moved > 100 * ATOL  # training changed the weights far beyond the tolerance: allclose is not vacuous
    for name, value in ref.items():
        torch.testing.assert_close(result[f"decoder.{name}"], value, atol=ATOL, rtol=0, msg=name)
    torch.testing.assert_close(result["logits"], single.latents.logits, atol=LOGIT_ATOL, rtol=0)
    assert result["packed"].shape == (N_IMAGES, 8) and result["packed"].dtype == torch.uint8
    np.testing.assert_array_equal(result["packed"].numpy(), single.latents.packed())
    assert result["loss"].tolist() == pytest.approx(single.curves["loss"], rel=1e-4)
    # the checkpoint is the single-process format: one process resumes the finished run at once
    again = _pretrain_single(checkpoint_dir=folder / "checkpoints", callback=lambda s, r: pytest.fail("no step"))
    torch.testing.assert_close(again.latents.logits, result["logits"], atol=0, rtol=0)


def test_two_processes_differ_from_a_wrong_batching(two_process_run):
    """The check can fail: per-rank batch 4 taken as the global batch (no union) is not the same run."""
    _, result = two_process_run
    wrong = _pretrain_single(TrainConfig(**{**TRAIN.to_dict(), "batch_size": TRAIN.batch_size // 2}))
    diff = max((result[f"decoder.{k}"] - v.float()).abs().max().item() for k, v in wrong.decoder.state_dict().items())
    assert diff > 100 * ATOL
    assert (result["logits"] - wrong.latents.logits).abs().max().item() > 10 * LOGIT_ATOL


def test_pytorchjob_manifest_runs_the_pretraining_node_with_torchrun_on_gpus():
    import yaml

    from bitlatent.pipelines.decoder_pretraining.distributed import parse_params

    path = Path(__file__).resolve().parents[2] / "deploy" / "kubeflow" / "pytorchjob-pretraining.yaml"
    job = yaml.safe_load(path.read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    nproc = int(job["spec"]["nprocPerNode"])
    for role in ("Master", "Worker"):
        (container,) = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and "bitlatent-pipeline" in container["image"]
        script = " ".join(container["command"] + container["args"])
        for token in ("torchrun", "-m bitlatent.pipelines.decoder_pretraining.distributed", "--backend nccl",
                      "--env k8s", "${MASTER_ADDR}", "${PET_NODE_RANK}"):  # fmt: skip
            assert token in script, token
        assert container["resources"]["limits"]["nvidia.com/gpu"] == nproc
    assert parse_params("pretraining.train.epochs=3,data.format=synthetic") == {
        "pretraining": {"train": {"epochs": 3}}, "data": {"format": "synthetic"}}
    with pytest.raises(ValueError, match="key=value"):
        parse_params("epochs")
