"""OnnxBundleDataset (local rename, object storage through fsspec) and the export's conf files."""

from __future__ import annotations

import shutil
import uuid

import fsspec
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog
from kedro.io.core import DatasetError

from bitlatent.datasets.onnx_bundle import OnnxBundle, OnnxBundleDataset
from bitlatent.export import ExportConfig
from bitlatent.inference.bundle import MANIFEST_FILE
from tests.export.tiny import PROJECT


def test_local_save_moves_the_staging_folder_and_load_verifies(tiny, tmp_path):
    staging = tmp_path / "staging"
    shutil.copytree(tiny.bundle, staging)
    dataset = OnnxBundleDataset(filepath=str(tmp_path / "06_models" / "onnx"))
    assert not dataset.exists()
    dataset.save(staging)
    assert not staging.exists() and dataset.exists()
    bundle = dataset.load()
    assert isinstance(bundle, OnnxBundle) and "decoder.onnx" in bundle.files
    assert bundle.generator(device="cpu").generate(["a red circle"]).shape == (1, 16, 16, 3)


def test_save_refuses_a_broken_bundle(tiny, tmp_path):
    staging = tmp_path / "staging"
    shutil.copytree(tiny.bundle, staging)
    (staging / "tokenizer.json").write_text("{}")
    dataset = OnnxBundleDataset(filepath=str(tmp_path / "onnx"))
    with pytest.raises(DatasetError, match="tokenizer.json is 2 bytes"):
        dataset.save(staging)  # Kedro wraps the BundleError
    assert not dataset.exists()


def test_object_storage_upload_puts_the_manifest_last_and_drops_stale_files(tiny, tmp_path):
    bucket = f"/bitlatent-test-{uuid.uuid4().hex}"
    root = f"{bucket}/06_models/onnx"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/stale.onnx", b"from an older export")
    dataset = OnnxBundleDataset(filepath=f"memory://{root}", cache_dir=str(tmp_path))  # memory:///bucket/...
    puts = []
    original = dataset._fs.put_file
    dataset._fs.put_file = lambda src, dst, **kw: (puts.append(dst.rsplit("/", 1)[-1]), original(src, dst, **kw))
    staging = tmp_path / "staging"
    shutil.copytree(tiny.bundle, staging)
    try:
        dataset.save(staging)
        assert puts[-1] == MANIFEST_FILE and len(puts) == len(list(staging.iterdir()))
        assert not fs.exists(f"{root}/stale.onnx") and fs.exists(f"{root}/{MANIFEST_FILE}")
        loaded = dataset.load()
        assert loaded.path.is_relative_to(tmp_path) and loaded.manifest["files"].keys() == {p for p in puts[:-1]}
    finally:
        fs.rm(bucket, recursive=True)


def test_base_catalog_and_parameters_load_through_kedro():
    config = OmegaConfigLoader(str(PROJECT / "conf"), base_env="base", default_run_env="base")
    catalog = config["catalog"]
    assert catalog["onnx_bundle"] == {"type": "bitlatent.datasets.onnx_bundle.OnnxBundleDataset",
                                      "filepath": "data/06_models/onnx"}  # fmt: skip
    assert catalog["export_report"]["filepath"] == "data/08_reporting/export.json"
    ExportConfig.from_dict(config["parameters"]["export"])  # every key known, every value valid
    DataCatalog.from_config({k: catalog[k] for k in ("onnx_bundle", "export_report")})


def test_k8s_entries_mirror_base_on_object_storage():
    from bitlatent.kubeflow.compiler import cluster_catalog_config

    base = yaml.safe_load((PROJECT / "conf" / "base" / "catalog_export.yml").read_text())
    k8s = cluster_catalog_config(PROJECT, "k8s", {"storage_root": "s3://ROOT", "shared_root": "/SHARED"})
    for name, entry in base.items():
        assert k8s[name]["type"] == entry["type"]
        assert k8s[name]["filepath"] == "s3://ROOT/" + entry["filepath"].removeprefix("data/")
        assert {k: v for k, v in k8s[name].items() if k != "filepath"} == {k: v for k, v in entry.items() if k != "filepath"}
    assert set(yaml.safe_load((PROJECT / "conf" / "k8s" / "catalog_export.yml").read_text())) - {"_storage"} == set(base)
    assert DataCatalog.from_config({"onnx_bundle": cluster_catalog_config(PROJECT, "k8s")["onnx_bundle"]})["onnx_bundle"]._protocol == "s3"


def test_export_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValueError, match=r"unknown export parameter\(s\) \[.fp32.\]; known: "):
        ExportConfig.from_dict({"opset": 18, "fp32": True})
    with pytest.raises(ValueError, match="opset"):
        ExportConfig(opset=17)
    with pytest.raises(ValueError, match="bit agreements"):
        ExportConfig(bit_agreement=1.5)


def test_library_takes_the_named_splits_once_per_image(tiny):
    import numpy as np

    from bitlatent.core.binary import pack_bits
    from bitlatent.data.latent_shards import LatentShard
    from bitlatent.export import library_from_latents

    spec = tiny.decoder.latent_spec
    bits = pack_bits(np.random.default_rng(0).integers(0, 2, (6, *spec.shape), dtype=np.uint8))
    shards = {"pretrain": LatentShard(bits[:3], np.array(["c", "a", "b"]), spec),
              "adapt": LatentShard(bits[3:], np.array(["a", "d", "e"]), spec),
              "test": LatentShard(bits[:1], np.array(["t"]), spec)}  # fmt: skip
    lib = library_from_latents(shards, ["pretrain", "adapt"], max_items=4)
    assert list(lib.image_ids) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(lib.packed[0], bits[1])  # "a" from pretrain, seen first
    assert library_from_latents(shards, [], 10) is None and library_from_latents(shards, ["x"], 10) is None
