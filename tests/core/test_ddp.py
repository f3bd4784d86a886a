"""Distributed pretraining: two gloo CPU processes under torchrun give the same decoder and latents
as single-process ``pretrain`` (same seed, same global batches), up to float tolerance."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

from bitlatent.core.binary import LatentSpec
from bitlatent.core.capacity import CapacityWarning
from bitlatent.core.ddp import _local_latent_table, owned_rows, pretrain_distributed
from bitlatent.core.decoder import DecoderConfig, load_decoder
from bitlatent.core.latents import LatentTable
from bitlatent.core.train import TrainConfig, pretrain

from .conftest import synthetic_images

N_IMAGES = 33  # odd: the ranks own 17 and 16 rows
DECODER = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(32, 16, 16), blocks_per_stage=(1, 1, 1))
# global batch 8 over 33 rows: steps of 8, 8, 8, 8, 1 rows, split unevenly between the two ranks;
# the last step of each epoch leaves one rank with no row (it joins the all-reduce with zero gradients)
TRAIN = TrainConfig(
    device="cpu", epochs=2, batch_size=8, warmup_steps=2, progress=False, decoder_lr=5e-3, latent_lr=0.2,
    hard_from=0.5, seed=3,
)  # fmt: skip
ATOL = 1e-5  # decoder weights (observed 2-process max |diff| ~6e-8)
# Latent logits: Adam normalises each latent's gradient, which amplifies rounding differences of
# near-zero gradients (observed ~2e-6 with 2 processes, ~5e-5 with 3); wrong batching gives ~1e-1.
LOGIT_ATOL = 2e-4


def _pretrain_single(cfg: TrainConfig = TRAIN):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CapacityWarning)
        return pretrain(synthetic_images(N_IMAGES, seed=1), DECODER, cfg)


@pytest.fixture(scope="module")
def single():
    return _pretrain_single()


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    """torchrun --nproc_per_node=2 -m bitlatent.core.ddp on 33 tiny images (gloo)."""
    tmp = tmp_path_factory.mktemp("ddp")
    np.save(tmp / "images.npy", synthetic_images(N_IMAGES, seed=1))
    (tmp / "config.json").write_text(json.dumps({"train": TRAIN.to_dict(), "decoder": DECODER.to_dict()}))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bitlatent.core.ddp", "--images", str(tmp / "images.npy"), "--out", str(tmp / "out"),
           "--config", str(tmp / "config.json"), "--backend", "gloo", "--save-logits"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return tmp / "out"


def test_owned_rows_partition_the_table():
    parts = [owned_rows(10, r, 3) for r in range(3)]
    assert parts[0].tolist() == [0, 3, 6, 9] and parts[2].tolist() == [2, 5, 8]
    assert sorted(np.concatenate(parts).tolist()) == list(range(10))


@pytest.mark.parametrize("n,world", [(37, 3), (9001, 2)])
def test_local_latent_init_is_the_single_process_init(n, world):
    spec = LatentSpec(h=4, w=4, bits_per_cell=4, image_size=16)
    full = LatentTable(n, spec, init_std=TRAIN.latent_init_std, seed=TRAIN.seed + 1).logits
    for r in range(world):
        local = _local_latent_table(n, r, world, spec, TRAIN, torch.device("cpu"))
        assert torch.equal(local.logits, full[r::world])


def test_world_size_one_equals_pretrain(single):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CapacityWarning)
        res = pretrain_distributed(synthetic_images(N_IMAGES, seed=1), DECODER, TRAIN, gather_logits=True)
    for (name, a), b in zip(single.decoder.state_dict().items(), res.decoder.state_dict().values()):
        torch.testing.assert_close(b, a, atol=ATOL, rtol=0, msg=name)
    torch.testing.assert_close(res.logits, single.latents.logits, atol=ATOL, rtol=0)
    np.testing.assert_array_equal(res.packed, single.latents.packed())
    assert res.curves["loss"] == pytest.approx(single.curves["loss"], rel=1e-5)


def test_two_processes_match_single_process(two_process_run, single):
    out = two_process_run
    decoder = load_decoder(out)
    ref = {k: v.float() for k, v in single.decoder.state_dict().items()}
    init = _pretrain_single(TrainConfig(**{**TRAIN.to_dict(), "epochs": 0})).decoder.state_dict()
    moved = max((ref[k] - init[k]).abs().max().item() for k in ref)
    assert moved > 100 * ATOL  # training changed the weights far beyond the tolerance: allclose is not vacuous
    for name, value in decoder.state_dict().items():
        torch.testing.assert_close(value, ref[name], atol=ATOL, rtol=0, msg=name)

    logits = torch.from_numpy(np.load(out / "logits.npy"))
    torch.testing.assert_close(logits, single.latents.logits, atol=LOGIT_ATOL, rtol=0)
    packed = np.load(out / "latents.npy")
    assert packed.shape == (N_IMAGES, 8) and packed.dtype == np.uint8
    np.testing.assert_array_equal(packed, single.latents.packed())
    np.testing.assert_array_equal(np.load(out / "indices.npy"), np.arange(N_IMAGES))
    curves = json.loads((out / "curves.json").read_text())
    assert curves["loss"] == pytest.approx(single.curves["loss"], rel=1e-4)


def test_two_processes_differ_from_a_wrong_batching(two_process_run):
    """The check can fail: per-rank batch 4 taken as the global batch (no union) is not the same run."""
    wrong = _pretrain_single(TrainConfig(**{**TRAIN.to_dict(), "batch_size": TRAIN.batch_size // 2}))
    decoder = load_decoder(two_process_run)
    diff = max((decoder.state_dict()[k] - v.float()).abs().max().item() for k, v in wrong.decoder.state_dict().items())
    assert diff > 100 * ATOL
    logits = torch.from_numpy(np.load(two_process_run / "logits.npy"))
    assert (logits - wrong.latents.logits).abs().max().item() > 10 * LOGIT_ATOL


def test_pytorchjob_manifest_runs_this_module_with_torchrun_on_gpus():
    import pathlib

    import yaml

    path = pathlib.Path(__file__).resolve().parents[2] / "deploy" / "kubeflow" / "pytorchjob-pretraining.yaml"
    job = yaml.safe_load(path.read_text())
    assert job["apiVersion"] == "kubeflow.org/v1" and job["kind"] == "PyTorchJob"
    nproc = int(job["spec"]["nprocPerNode"])
    for role in ("Master", "Worker"):
        (container,) = job["spec"]["pytorchReplicaSpecs"][role]["template"]["spec"]["containers"]
        assert container["name"] == "pytorch" and "bitlatent-pipeline" in container["image"]
        script = " ".join(container["command"] + container["args"])
        for token in ("torchrun", "-m bitlatent.core.ddp", "--backend nccl", "${MASTER_ADDR}", "${PET_NODE_RANK}"):
            assert token in script, token
        assert container["resources"]["limits"]["nvidia.com/gpu"] == nproc
