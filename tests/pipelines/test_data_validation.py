import json
from pathlib import Path

import pandas as pd
import pytest
from kedro.runner import SequentialRunner

from bitlatent.pipelines.data_validation import create_pipeline
from tests.pipelines.conftest import kedro, real_catalog
from tests.tiny_project import tiny_parameters


def tiny_data_params(**overrides) -> dict:
    """The tiny project's data parameters on 120 pairs: two ingest chunks, three shards."""
    return tiny_parameters({"data": {"max_pairs": 120, "rows_per_shard": 50, "chunk_rows": 64, **overrides}})["data"]


def test_sequential_runner_writes_every_artifact(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    catalog = real_catalog({"data": tiny_data_params()})
    SequentialRunner().run(create_pipeline(), catalog)

    pairs = pd.read_parquet("data/03_primary/pairs.parquet")
    rejected = pd.read_parquet("data/02_intermediate/rejected_pairs.parquet")
    report = json.loads(Path("data/08_reporting/validation.json").read_text())
    assert report["input_rows"] == 120 == len(pairs) + len(rejected)
    assert list(pairs.columns[:6]) == ["sample_id", "image_id", "caption", "split", "shard", "row"]
    expectations = report["expectations"]["expectations"]
    assert {r for e in expectations for r in e["reasons"]} >= {"duplicate_sample_id", "constant_image"}
    assert all(e["success"] for e in expectations)
    shards = catalog.load("image_shards")
    assert sum(shards.num_images(s) for s in shards.splits) == pairs["image_id"].nunique()
    assert not any(Path("data/02_intermediate/scratch").iterdir())  # staging moved into place


def test_over_budget_fails_but_keeps_the_rejected_rows(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "captions.csv").write_text(
        "image,caption\n" + "".join(f"missing{i}.jpg,a caption {i}\n" for i in range(10)))
    params = tiny_data_params(format="csv", path=str(tmp_path / "in" / "captions.csv"), max_pairs=None)
    with pytest.raises(Exception, match="10 of 10 rows rejected.*missing_file: 10"):
        SequentialRunner().run(create_pipeline(), real_catalog({"data": params}))
    assert len(pd.read_parquet("data/02_intermediate/rejected_pairs.parquet")) == 10
    assert not Path("data/03_primary/pairs.parquet").exists()
    assert not Path("data/03_primary/image_shards").exists()


def test_kedro_run_data_validation_cli(project_copy: Path):
    done = kedro(project_copy, "run", "--pipelines", "data_validation",
                 "--params", "data.max_pairs=80,data.image_size=32,data.rows_per_shard=30")
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((project_copy / "data/08_reporting/validation.json").read_text())
    assert report["input_rows"] == 80
    index = json.loads((project_copy / "data/03_primary/image_shards/index.json").read_text())
    assert index["image_size"] == 32 and index["rows_per_shard"] == 30
