"""The compression pipeline's nodes on a small synthetic project: the entropy model trains, goes through
its catalog dataset, and the test split's streams give the metrics write_metrics merges into metrics.json."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from kedro.runner import SequentialRunner

from bitlatent.codec import HEADER_BYTES
from bitlatent.codec.entropy_model import EntropyModel, EntropyModelConfig
from bitlatent.core.binary import LatentSpec, pack_bits
from bitlatent.data.latent_shards import LatentShard, save_latent_shard
from bitlatent.data.synthetic import SyntheticConfig, render_sample
from bitlatent.datasets.models import EntropyModelDataset, LatentParts
from bitlatent.pipelines.compression import create_pipeline
from bitlatent.pipelines.compression.nodes import evaluate_compression
from bitlatent.pipelines.evaluation.nodes import write_metrics
from tests.pipelines.conftest import real_catalog
from tests.tiny_project import tiny_parameters

SPEC = LatentSpec(h=4, w=4, bits_per_cell=4, image_size=16)
SPLITS = ("pretrain", "adapt", "test")
CAPACITY_KEYS = {"entropy_coded_bits_per_image", "entropy_coded_bits_per_pixel",
                 "entropy_coded_bits_per_image_captioned", "entropy_coded_bits_per_pixel_captioned",
                 "compress_ms_per_image", "decompress_ms_per_image"}


def project(root: Path) -> tuple[pd.DataFrame, dict, LatentParts]:
    """30 synthetic pairs (10 a split), their latents: pretraining's and one finished adaptation part."""
    cfg = SyntheticConfig(image_size=32, max_objects=1)  # captions only: the latents are random
    pairs = pd.DataFrame([{"sample_id": f"s{i:03d}", "image_id": f"syn-{i}", "caption": render_sample(i, cfg)[1],
                           "split": SPLITS[i % 3], "attributes": json.dumps(render_sample(i, cfg)[2])}
                          for i in range(30)])  # fmt: skip
    bits = np.random.default_rng(0).integers(0, 2, (30, *SPEC.shape), dtype=np.uint8)
    shards = {split: LatentShard(pack_bits(bits[i::3]), np.array([f"syn-{k}" for k in range(i, 30, 3)]), SPEC)
              for i, split in enumerate(SPLITS)}  # fmt: skip
    part = root / "latents" / "part-0-of-1"
    for split in ("adapt", "test"):
        save_latent_shard(part / split / "shard-00000.npz", shards[split])
    (part / "index.json").write_text("{}")
    return pairs, {"pretrain": shards["pretrain"]}, LatentParts(root / "latents")


@pytest.fixture(scope="module")
def ran(tmp_path_factory) -> Path:
    """The pipeline run by Kedro's runner with the real catalog, in a scratch folder (its paths are relative)."""
    root = tmp_path_factory.mktemp("compression")
    pairs, pretrain, parts = project(root)
    catalog = real_catalog(tiny_parameters())
    catalog["pairs"], catalog["pretrain_latents"], catalog["adapted_latents"] = pairs, pretrain, parts
    cwd, threads = Path.cwd(), torch.get_num_threads()
    os.chdir(root)
    torch.set_num_threads(1)  # a model this small runs slower on more threads
    try:
        SequentialRunner().run(create_pipeline(), catalog)
    finally:
        os.chdir(cwd)
        torch.set_num_threads(threads)
    return root


def test_the_model_and_its_curves_are_written(ran):
    model = EntropyModelDataset(str(ran / "data/06_models/entropy_model")).load()
    assert isinstance(model, EntropyModel) and model.config.latent_shape == SPEC.shape
    assert (model.config.width, model.config.layers) == (32, 1), "the tiny project's architecture"
    curves = json.loads((ran / "data/08_reporting/compression_curves.json").read_text())
    assert [c["step"] for c in curves] == list(range(1, len(curves) + 1)) and len(curves) == 30
    assert {"loss", "lr", "epoch", "wall_time"} <= set(curves[0])
    assert any((ran / "data/06_models/checkpoints/compression").glob("*/entropy_model_train.safetensors"))


def test_the_metrics_are_the_capacity_keys_of_metrics_json_and_the_details(ran):
    metrics = json.loads((ran / "data/08_reporting/compression.json").read_text())
    assert set(metrics) == {"capacity", "compression"}
    capacity, details = metrics["capacity"], metrics["compression"]
    assert set(capacity) == CAPACITY_KEYS
    raw = SPEC.bits_per_image
    framing = 8 * HEADER_BYTES
    for key in ("entropy_coded_bits_per_image", "entropy_coded_bits_per_image_captioned"):
        # random latents: about a bit per bit, plus the header, plus at most the last 32-bit word
        assert raw * 0.9 + framing < capacity[key] <= raw * 1.2 + framing + 32, (key, capacity[key])
    assert capacity["entropy_coded_bits_per_pixel"] == capacity["entropy_coded_bits_per_image"] / 16 ** 2
    assert capacity["compress_ms_per_image"] > 0 and capacity["decompress_ms_per_image"] > 0
    assert details["images"] == 10 and details["raw_bits_per_image"] == raw and details["stages"] == 8
    assert details["unconditional"]["bits_per_image"] == capacity["entropy_coded_bits_per_image"]
    assert details["unconditional"]["payload_bits_per_image"] == capacity["entropy_coded_bits_per_image"] - framing
    weights = (ran / "data/06_models/entropy_model/entropy_model.safetensors").read_bytes()
    assert details["model_id"] == hashlib.sha256(weights).hexdigest()[:8]
    merged = write_metrics({"capacity": {"bits_per_image": raw}}, metrics)
    assert merged["capacity"]["bits_per_image"] == raw and CAPACITY_KEYS <= set(merged["capacity"])


def test_a_test_latent_without_a_caption_is_an_error(tmp_path):
    pairs, pretrain, parts = project(tmp_path)
    params = tiny_parameters({"compression": {"feature_cache": str(tmp_path / "features")}})["compression"]
    torch.manual_seed(0)
    model = EntropyModel(replace(EntropyModelConfig.from_dict(params["model"]), latent_h=4, latent_w=4,
                                 bits_per_cell=4))  # fmt: skip
    with pytest.raises(ValueError, match="1 test latent.*no caption"):
        evaluate_compression(pairs[pairs["image_id"] != "syn-2"], pretrain, parts, model, params)
