"""conf/k8s: the base catalog on object storage (fsspec) and on the shared volume.

Loaded with Kedro's OmegaConfigLoader exactly as `kedro run --env k8s` loads it, with the
roots moved to an in-memory filesystem or a temporary folder (`runtime_params`, as
`--params storage_root=...,shared_root=...` does on the cluster).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import fsspec
import numpy as np
import pandas as pd
import pytest
import yaml
from kedro.config import OmegaConfigLoader
from kedro.io import DataCatalog

from bitlatent.data.shards import ImageShards, ShardWriter
from bitlatent.kubeflow.compiler import cluster_catalog_config, read_globals
from tests.tiny_project import PROJECT

STORAGE, SHARED = "STORAGE-ROOT", "/SHARED-ROOT"
# bitlatent's folder datasets read and write local files: they must be on the shared volume.
LOCAL_ONLY_PREFIXES = ("bitlatent.datasets.image_shards.", "bitlatent.datasets.models.")


def base_catalog() -> dict:
    return dict(OmegaConfigLoader(str(PROJECT / "conf"), base_env="base",
                                  default_run_env="base")["catalog"])


def k8s_only() -> dict:
    """Every conf/k8s/catalog*.yml, without the root keys ("_storage", "_shared")."""
    raw: dict = {}
    for path in sorted((PROJECT / "conf" / "k8s").glob("catalog*.yml")):
        raw.update(yaml.safe_load(path.read_text()) or {})
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def k8s_catalog(storage_root: str = STORAGE, shared_root: str = SHARED) -> dict:
    return cluster_catalog_config(PROJECT, "k8s", {"storage_root": storage_root,
                                                   "shared_root": shared_root})


def _location_key(entry: dict) -> str | None:
    return next((k for k in ("filepath", "path") if k in entry), None)


def _local_entries(catalog: dict) -> dict[str, tuple[str, str]]:
    """Entries whose filepath/path is a local path: name -> (key, path)."""
    found = {}
    for name, entry in catalog.items():
        key = _location_key(entry)
        if key and "://" not in str(entry[key]):
            found[name] = (key, str(entry[key]))
    return found


def test_globals_hold_the_two_roots():
    roots = read_globals(PROJECT, "k8s")
    assert roots["storage_root"] == "s3://bitlatent-data"
    assert roots["shared_root"].startswith("/")


def test_every_local_path_in_base_has_a_k8s_override():
    base, k8s = base_catalog(), k8s_catalog()
    local = _local_entries(base)
    assert local, "base/catalog.yml has no local paths?"
    missing = sorted(set(local) - set(k8s_only()))
    assert not missing, f"add these to conf/k8s/catalog.yml (see its header): {missing}"
    for name, (key, path) in local.items():
        entry = k8s[name]
        assert entry["type"] == base[name]["type"], name
        relative = path.removeprefix("data/")
        assert entry[key] in (f"{STORAGE}/{relative}", f"{SHARED}/{relative}"), (
            f"{name}: {entry[key]} does not mirror {path}")
        # Everything but the location is as in base (save_args, load_args, ...).
        same = {k: v for k, v in entry.items() if k != key}
        assert same == {k: v for k, v in base[name].items() if k != key}, name


def test_k8s_has_no_entry_that_base_lacks():
    assert set(k8s_only()) <= set(base_catalog())


def test_local_only_datasets_are_on_the_shared_volume_and_the_rest_on_storage():
    for name, entry in k8s_catalog().items():
        key = _location_key(entry)
        if key is None or name not in k8s_only():
            continue
        if entry["type"].startswith(LOCAL_ONLY_PREFIXES):
            assert entry[key].startswith(f"{SHARED}/"), name
        else:
            assert entry[key].startswith(f"{STORAGE}/"), name


def test_default_roots_resolve_to_s3_and_the_mount():
    catalog = cluster_catalog_config(PROJECT, "k8s")
    assert catalog["pairs"]["filepath"] == "s3://bitlatent-data/03_primary/pairs.parquet"
    assert catalog["image_shards"]["path"] == "/mnt/bitlatent/03_primary/image_shards"
    assert not any(k.startswith("_") for k in catalog)


def _reader(dataset):
    """The kedro-datasets instance that loads and saves ``dataset`` (bitlatent.datasets.atomic's
    datasets wrap one)."""
    return getattr(dataset, "_dataset", dataset)


def test_s3_datasets_are_built_on_s3fs():
    catalog = DataCatalog.from_config(cluster_catalog_config(PROJECT, "k8s"))
    pairs = _reader(catalog["pairs"])
    assert pairs._protocol == "s3"
    assert str(pairs._filepath) == "bitlatent-data/03_primary/pairs.parquet"


@pytest.fixture
def memory_root():
    root = f"bitlatent-test-{uuid.uuid4().hex}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{root}"):
        fs.rm(f"/{root}", recursive=True)


def test_every_storage_dataset_goes_through_fsspec(memory_root, tmp_path):
    # memory:/// (no host): Kedro keeps the host part only for cloud protocols.
    catalog = DataCatalog.from_config(k8s_catalog(f"memory:///{memory_root}", str(tmp_path)))
    for name, entry in k8s_only().items():
        if "filepath" in entry:
            assert _reader(catalog[name])._protocol == "memory", name


def test_save_and_load_through_the_k8s_catalog(memory_root, tmp_path):
    shared = tmp_path / "shared"
    catalog = DataCatalog.from_config(k8s_catalog(f"memory:///{memory_root}", str(shared)))

    pairs = pd.DataFrame({"sample_id": ["a-0", "b-0"], "image_id": ["a", "b"],
                          "caption": ["a red circle", "a blue square"], "split": ["adapt", "test"],
                          "shard": [0, 0], "row": [0, 0]})
    catalog.save("pairs", pairs)
    pd.testing.assert_frame_equal(catalog.load("pairs"), pairs)
    catalog.save("validation_report", {"input_rows": 2, "accepted": 2, "rejected": 0})
    assert catalog.load("validation_report")["accepted"] == 2

    fs = fsspec.filesystem("memory")
    assert fs.exists(f"/{memory_root}/03_primary/pairs.parquet")
    assert fs.exists(f"/{memory_root}/08_reporting/validation.json")

    # image_shards: a finished staging folder is committed onto the shared volume.
    staging = tmp_path / "scratch" / "image_shards-x"
    writer = ShardWriter(staging, image_size=8, rows_per_shard=2)
    images = np.arange(3 * 8 * 8 * 3, dtype=np.uint8).reshape(3, 8, 8, 3)
    for image in images:
        writer.add("pretrain", image)
    writer.close()
    catalog.save("image_shards", staging)
    assert (shared / "03_primary" / "image_shards" / "index.json").is_file()
    loaded = catalog.load("image_shards")
    assert isinstance(loaded, ImageShards)
    assert loaded.num_images("pretrain") == 3 and loaded.num_shards("pretrain") == 2
    np.testing.assert_array_equal(loaded.shard("pretrain", 1), images[2:])


def test_kedro_run_with_env_k8s(tmp_path):
    """The real `kedro run --pipelines data_validation --env k8s`, as a KFP component runs
    it, with a local folder as the bucket and another as the shared volume."""
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        if (PROJECT / name).exists():
            shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()  # the package is imported from the installed project
    bucket, shared = tmp_path / "bucket", tmp_path / "shared"
    params = ",".join([f"storage_root=file://{bucket}", f"shared_root={shared}",
                       f"data.scratch_dir={shared}/02_intermediate/scratch", "data.max_pairs=40"])
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "kedro", "run", "--pipelines", "data_validation", "--env", "k8s",
         "--params", params],
        cwd=project, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    pairs = pd.read_parquet(bucket / "03_primary" / "pairs.parquet")
    assert len(pairs) == 40
    assert (bucket / "08_reporting" / "validation.json").is_file()
    assert (bucket / "02_intermediate" / "rejected_pairs.parquet").is_file()
    shards = ImageShards(shared / "03_primary" / "image_shards")
    assert sum(shards.num_images(split) for split in shards.splits) == 40
    assert not (project / "data").exists() or not any((project / "data").rglob("*.parquet"))


def test_k8s_gpu_is_the_k8s_catalog_with_the_gpu_parameters():
    """`--env k8s_gpu` (what `bitlatent kubeflow compile --gpu` pods run) resolves to exactly
    conf/k8s's catalog and roots and conf/gpu's parameters: its files link to theirs."""
    from bitlatent import settings

    def config(env: str) -> dict:
        # resolved right away: the `globals` resolver belongs to the loader made last
        args = {**settings.CONFIG_LOADER_ARGS, "default_run_env": env}
        loader = OmegaConfigLoader(str(PROJECT / "conf"), **args)
        return {"catalog": dict(loader["catalog"]), "parameters": loader["parameters"]}

    k8s_gpu, k8s, gpu = config("k8s_gpu"), config("k8s"), config("gpu")
    assert k8s_gpu["catalog"] == k8s["catalog"]
    assert k8s_gpu["catalog"]["pairs"]["filepath"].startswith("s3://")
    assert read_globals(PROJECT, "k8s_gpu") == read_globals(PROJECT, "k8s")
    assert k8s_gpu["parameters"] == gpu["parameters"]
    assert k8s_gpu["parameters"] != k8s["parameters"]  # the GPU sizes, not conf/base's
    assert k8s_gpu["parameters"]["pretraining"]["train"]["device"] == "cuda"
