"""Registry -> DAG of pipelines through their datasets (Kedro only, no KFP)."""

from __future__ import annotations

import pytest
from kedro.pipeline import Pipeline, node

from bitlatent.kubeflow.dag import (
    DESIGN_ORDER,
    PipelineDag,
    external_inputs,
    load_registry,
    unshared_inputs,
)
from bitlatent.kubeflow.compiler import cluster_catalog_config, read_globals
from tests.kubeflow.conftest import EXPECTED_UPSTREAM
from tests.tiny_project import PROJECT


def _identity(x):
    return x


def test_dependencies_follow_the_datasets(registry):
    dag = PipelineDag.from_registry(registry)
    assert set(dag.pipelines) == set(EXPECTED_UPSTREAM)  # __default__ left out
    assert {name: set(ups) for name, ups in dag.upstream.items()} == EXPECTED_UPSTREAM
    assert dag.upstream["export"]["alignment"] == {"text_to_latent"}
    assert dag.upstream["latent_adaptation"]["decoder_pretraining"] == {"decoder", "latent_spec"}


def test_order_is_the_run_order(registry):
    assert PipelineDag.from_registry(registry).order == list(DESIGN_ORDER)


def test_order_breaks_ties_by_run_order_then_name():
    # Nothing links these: the run order first, unknown names after, alphabetically.
    registry = {name: Pipeline([node(_identity, f"in_{name}", f"out_{name}")])
                for name in ["zeta", "export", "alpha", "data_validation"]}
    assert PipelineDag.from_registry(registry).order == ["data_validation", "export", "alpha", "zeta"]


def test_internal_datasets_do_not_link(registry):
    # rejected_pairs is made and read inside data_validation: no self edge, not an input.
    assert "rejected_pairs" not in external_inputs(registry["data_validation"])
    assert external_inputs(registry["data_validation"]) == set()  # params only


def test_a_new_pipeline_appears_without_editing_a_list(registry):
    registry["benchmark"] = Pipeline([node(_identity, "metrics", "benchmark_report")])
    dag = PipelineDag.from_registry(registry)
    assert dag.order[-1] == "benchmark"
    assert dag.dependencies("benchmark") == ["evaluation"]


def test_excluded_pipelines_are_left_out(registry):
    dag = PipelineDag.from_registry(registry, excluded=["export"])
    assert "export" not in dag.order and "__default__" not in dag.order


def test_transcoded_datasets_link():
    registry = {
        "a": Pipeline([node(_identity, "x", "table@pandas")]),
        "b": Pipeline([node(_identity, "table@spark", "y")]),
    }
    assert PipelineDag.from_registry(registry).upstream["b"] == {"a": {"table@spark"}}


def test_a_cycle_is_an_error():
    registry = {
        "a": Pipeline([node(_identity, "y", "x")]),
        "b": Pipeline([node(_identity, "x", "y")]),
    }
    with pytest.raises(ValueError, match="cycle"):
        PipelineDag.from_registry(registry)


def test_inputs_no_other_pod_could_write_are_found(registry):
    catalog = {
        "pairs": {"type": "pandas.ParquetDataset", "filepath": "s3://b/pairs.parquet"},
        "image_shards": {"type": "bitlatent.datasets.image_shards.ImageShardsDataset",
                         "path": "/mnt/shared/image_shards"},
        "decoder": {"type": "MemoryDataset"},
        "latent_spec": {"type": "json.JSONDataset", "filepath": "data/06_models/spec.json"},
        "{name}_latents": {"type": "pickle.PickleDataset", "filepath": "gs://b/{name}.pkl"},
        "text_to_latent": {"type": "sql.SQLTableDataset", "table_name": "t"},
    }
    missing = unshared_inputs(PipelineDag.from_registry(registry), catalog, "/mnt/shared")
    assert "data_validation" not in missing and "decoder_pretraining" not in missing
    # decoder: memory; latent_spec: a pod-local relative path.
    assert missing["latent_adaptation"] == {"decoder", "latent_spec"}
    # "{name}_latents" matches pretrain_latents and adapted_latents (remote); a dataset
    # without filepath/path (text_to_latent here) is trusted.
    assert missing["alignment"] == {"latent_spec"}
    assert missing["evaluation"] == {"decoder"}
    # Without a shared volume, a local absolute path does not reach other pods either.
    missing = unshared_inputs(PipelineDag.from_registry(registry), catalog, None)
    assert "image_shards" in missing["decoder_pretraining"]


def test_the_real_registry_loads_through_kedro():
    registry = load_registry(PROJECT)
    assert "data_validation" in registry and "__default__" in registry
    dag = PipelineDag.from_registry(registry)
    assert dag.order[0] == "data_validation"
    assert set(dag.order) == set(registry) - {"__default__"}


def test_the_real_pipelines_read_only_what_other_pods_can_write():
    dag = PipelineDag.from_registry(load_registry(PROJECT))
    roots = read_globals(PROJECT, "k8s")
    catalog = cluster_catalog_config(PROJECT, "k8s")
    assert unshared_inputs(dag, catalog, roots["shared_root"]) == {}
