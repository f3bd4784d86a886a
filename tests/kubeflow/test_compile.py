"""Compile the KFP pipeline to YAML and read the DAG back: components, dependencies, the
ParallelFor fan-out, resources, accelerators, caching, volumes and secrets."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kedro.pipeline import Pipeline, node

from bitlatent.kubeflow import compile_pipeline
from bitlatent.kubeflow.compiler import (
    STORAGE_KEYS_OPTIONAL,
    STORAGE_KEYS_REQUIRED,
    ComponentConfig,
    default_components,
    read_components,
)
from tests.kubeflow.conftest import EXPECTED_UPSTREAM, GPU_PIPELINES, Compiled
from bitlatent.kubeflow.dag import PipelineDag, load_registry
from tests.tiny_project import PROJECT, base_parameters

IMAGE = "registry.example/bitlatent-pipeline:1.2.3"


def _compile(tmp_path: Path, registry, num_shards: int = 4, **options) -> Compiled:
    path = compile_pipeline(tmp_path / "pipeline.yaml", IMAGE, num_shards, project_path=PROJECT,
                            registry=registry, check_catalog=False, **options)
    return Compiled(path)


@pytest.fixture
def compiled(tmp_path, registry) -> Compiled:
    return _compile(tmp_path, registry, num_shards=4, parallelism=2)


def test_one_component_per_kedro_pipeline(compiled):
    assert compiled.pipelines == set(EXPECTED_UPSTREAM)  # no __default__
    for name in compiled.pipelines:
        container = compiled.executor(name)
        assert container["image"] == IMAGE
        assert container["command"] == ["kedro"]
        # GPUs by default, so the pods run the GPU-sized settings of conf/k8s_gpu
        assert container["args"][:6] == ["run", "--pipelines", name, "--env", "k8s_gpu", "--params"]


def test_dependencies_come_from_the_datasets(compiled):
    assert {name: compiled.upstream(name) for name in compiled.pipelines} == EXPECTED_UPSTREAM


def test_latent_adaptation_fans_out_over_shards(compiled):
    assert set(compiled.loops) == {"latent_adaptation"}
    loop = compiled.loops["latent_adaptation"]
    assert loop["parameterIterator"]["items"]["raw"] == "[0, 1, 2, 3]"
    assert loop["iteratorPolicy"]["parallelismLimit"] == 2
    params = compiled.params_arg("latent_adaptation")
    shard = "{{$.inputs.parameters['shard']}}"
    assert params.endswith(f"latent_adaptation.shard={shard},latent_adaptation.num_shards=4")
    # The loop item feeds the shard input.
    task = compiled.tasks["latent_adaptation"]
    loop_item = loop["parameterIterator"]["itemInput"]
    assert task["inputs"]["parameters"]["shard"]["componentInputParameter"] == loop_item
    # Downstream pipelines wait for the whole loop, not one iteration.
    assert "latent_adaptation" in compiled.upstream("alignment")
    assert "latent_adaptation" in compiled.upstream("evaluation")


@pytest.mark.parametrize("num_shards", [1, 7])
def test_num_shards_is_a_compile_option(tmp_path, registry, num_shards):
    compiled = _compile(tmp_path, registry, num_shards=num_shards)
    loop = compiled.loops["latent_adaptation"]
    assert loop["parameterIterator"]["items"]["raw"] == str(list(range(num_shards)))
    assert "iteratorPolicy" not in loop  # parallelism 0: unbounded
    assert compiled.params_arg("latent_adaptation").endswith(f"num_shards={num_shards}")


def test_num_shards_must_be_positive(tmp_path, registry):
    with pytest.raises(ValueError, match="num_shards"):
        _compile(tmp_path, registry, num_shards=0)


def test_every_component_has_cpu_and_memory_requests_and_limits(compiled):
    defaults = default_components()
    for name in compiled.pipelines:
        resources = compiled.executor(name)["resources"]
        config = defaults[name]
        assert resources["resourceCpuRequest"] == config.cpu_request
        assert resources["resourceCpuLimit"] == config.cpu_limit
        assert resources["resourceMemoryRequest"] == config.memory_request
        assert resources["resourceMemoryLimit"] == config.memory_limit


def test_pretraining_adaptation_and_alignment_request_gpus(compiled):
    for name in compiled.pipelines:
        resources = compiled.executor(name)["resources"]
        tolerations = compiled.k8s(name).get("tolerations", [])
        if name in GPU_PIPELINES:
            assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
            assert resources["accelerator"]["resourceCount"] == "1"
            assert tolerations == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                    "effect": "NoSchedule"}]
        else:
            assert "accelerator" not in resources, name
            assert tolerations == []


def test_cpu_compile_requests_no_gpu_and_runs_the_cpu_settings(tmp_path, registry):
    resources = tmp_path / "resources.yml"
    resources.write_text("decoder_pretraining: {accelerators: 4}\nevaluation: {accelerators: 1}\n")
    compiled = _compile(tmp_path, registry, gpu=False, components=read_components(resources))
    assert compiled.pipelines == set(EXPECTED_UPSTREAM)
    for name in compiled.pipelines:
        assert compiled.executor(name)["args"][3:5] == ["--env", "k8s"], name
        assert "accelerator" not in compiled.executor(name)["resources"], name
        assert compiled.k8s(name).get("tolerations", []) == [], name


@pytest.mark.parametrize("gpu", [True, False])
def test_an_explicit_env_is_what_the_pods_run_either_way(tmp_path, registry, gpu):
    compiled = _compile(tmp_path, registry, gpu=gpu, env="k8s")
    for name in compiled.pipelines:
        assert compiled.executor(name)["args"][3:5] == ["--env", "k8s"], name
        requested = "accelerator" in compiled.executor(name)["resources"]
        assert requested == (gpu and name in GPU_PIPELINES), name


def test_the_real_project_compiles_both_ways(tmp_path):
    """The catalog check runs against each environment's own catalog (conf/k8s, conf/k8s_gpu)."""
    for gpu, env in ((True, "k8s_gpu"), (False, "k8s")):
        compiled = Compiled(compile_pipeline(tmp_path / f"{env}.yaml", IMAGE, 2,
                                             project_path=PROJECT, gpu=gpu))
        for name in compiled.pipelines:
            assert compiled.executor(name)["args"][3:5] == ["--env", env], name
            gpus = compiled.executor(name)["resources"].get("accelerator", {}).get("resourceCount")
            assert gpus == ("1" if gpu and name in GPU_PIPELINES else None), (env, name)


def test_accelerator_type_and_count_are_options(tmp_path, registry):
    resources = tmp_path / "resources.yml"
    resources.write_text("decoder_pretraining: {accelerators: 4, memory_limit: 128Gi}\n")
    compiled = _compile(tmp_path, registry, accelerator_type="amd.com/gpu",
                        components=read_components(resources), gpu_toleration=False)
    pretraining = compiled.executor("decoder_pretraining")["resources"]
    assert pretraining["accelerator"] == {"count": "4", "resourceCount": "4",
                                          "type": "amd.com/gpu", "resourceType": "amd.com/gpu"}
    assert pretraining["resourceMemoryLimit"] == "128Gi"
    assert pretraining["resourceCpuRequest"] == default_components()["decoder_pretraining"].cpu_request
    assert "tolerations" not in compiled.k8s("decoder_pretraining")


def test_unknown_resource_fields_are_refused(tmp_path):
    bad = tmp_path / "resources.yml"
    bad.write_text("alignment: {gpus: 2}\n")
    with pytest.raises(ValueError, match="gpus"):
        read_components(bad)


@pytest.mark.parametrize("enable", [True, False])
def test_caching_is_chosen_at_compile_time(tmp_path, registry, enable):
    compiled = _compile(tmp_path, registry, enable_caching=enable)
    for name in compiled.pipelines:
        assert compiled.tasks[name].get("cachingOptions", {}).get("enableCache", False) is enable


def test_caching_is_off_by_default(tmp_path, registry):
    compiled = _compile(tmp_path, registry)
    assert not any(t.get("cachingOptions", {}).get("enableCache") for t in compiled.tasks.values())


def test_storage_root_and_kedro_params_are_run_parameters(compiled):
    inputs = compiled.spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["storage_root"]["defaultValue"] == "s3://bitlatent-data"  # conf/k8s/globals.yml
    assert inputs["kedro_params"]["defaultValue"] == ""
    for name in compiled.pipelines:
        params = compiled.params_arg(name)
        assert params.startswith("storage_root={{$.inputs.parameters['storage_root']}},"
                                 "{{$.inputs.parameters['kedro_params']}},"
                                 "shared_root=/mnt/bitlatent")
    assert "data.scratch_dir=/mnt/bitlatent/02_intermediate/scratch" in compiled.params_arg(
        "data_validation")


def test_roots_can_be_overridden(tmp_path, registry):
    compiled = _compile(tmp_path, registry, storage_root="s3://other/prefix",
                        shared_root="/data/shared")
    inputs = compiled.spec["root"]["inputDefinitions"]["parameters"]
    assert inputs["storage_root"]["defaultValue"] == "s3://other/prefix"
    assert "shared_root=/data/shared," in compiled.params_arg("data_validation")
    assert compiled.k8s("export")["pvcMount"][0]["mountPath"] == "/data/shared"


def test_shared_volume_and_storage_secret(compiled):
    for name in compiled.pipelines:
        k8s = compiled.k8s(name)
        (mount,) = k8s["pvcMount"]
        assert mount["mountPath"] == "/mnt/bitlatent"
        assert mount["pvcNameParameter"]["runtimeValue"]["constant"] == "bitlatent-shared"
        required, optional = k8s["secretAsEnv"]
        assert required["secretName"] == optional["secretName"] == "bitlatent-storage"
        assert [e["envVar"] for e in required["keyToEnv"]] == list(STORAGE_KEYS_REQUIRED)
        assert not required["optional"]
        assert [e["envVar"] for e in optional["keyToEnv"]] == list(STORAGE_KEYS_OPTIONAL)
        assert optional["optional"]


def test_volume_and_secret_can_be_left_out(tmp_path, registry):
    compiled = _compile(tmp_path, registry, shared_pvc=None, storage_secret=None,
                        image_pull_secrets=("regcred",))
    for name in compiled.pipelines:
        k8s = compiled.k8s(name)
        assert "pvcMount" not in k8s and "secretAsEnv" not in k8s
        assert k8s["imagePullSecret"] == [{"secretName": "regcred", "secretNameParameter": {
            "runtimeValue": {"constant": "regcred"}}}]


def test_a_new_pipeline_gets_a_component_and_fallback_resources(tmp_path, registry):
    registry["benchmark"] = Pipeline([node(lambda m: m, "metrics", "benchmark_report")])
    compiled = _compile(tmp_path, registry)
    assert compiled.upstream("benchmark") == {"evaluation"}
    fallback = ComponentConfig()
    assert compiled.executor("benchmark")["resources"]["resourceMemoryLimit"] == fallback.memory_limit


def test_a_pipeline_reading_what_no_other_pod_can_write_is_refused(tmp_path, registry):
    # "scratch_scores" has no catalog entry: a MemoryDataset, empty in the reading pod.
    registry["scoring"] = Pipeline([node(lambda m: m, "metrics", "scratch_scores")])
    registry["report"] = Pipeline([node(lambda s: s, "scratch_scores", "final_report")])
    with pytest.raises(ValueError, match=r"own pod.*report: \[.*'scratch_scores'"):
        compile_pipeline(tmp_path / "p.yaml", IMAGE, 2, project_path=PROJECT, registry=registry)


def test_without_the_shared_volume_local_datasets_are_refused(tmp_path):
    with pytest.raises(ValueError, match="image_shards"):
        compile_pipeline(tmp_path / "p.yaml", IMAGE, 2, project_path=PROJECT, shared_pvc=None)


def test_the_real_project_compiles(tmp_path):
    path = compile_pipeline(tmp_path / "pipeline.yaml", IMAGE, 3, project_path=PROJECT)
    compiled = Compiled(path)
    assert compiled.pipelines == set(load_registry(PROJECT)) - {"__default__"}
    assert compiled.upstream("data_validation") == set()


def test_the_yaml_loads_back_in_kfp(compiled, tmp_path):
    from kfp import components

    pipeline = components.load_component_from_file(str(tmp_path / "pipeline.yaml"))
    assert pipeline.name == "bitlatent"
    assert set(pipeline.component_spec.inputs) == {"storage_root", "kedro_params"}


def _leaves(value: Any, prefix: str):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{prefix}.{key}")
    else:
        yield prefix, value


def test_no_parameter_leaves_a_path_on_the_pods_disk():
    """A `data/...` path in parameters would land on the pod's own disk and vanish with it:
    each one a pipeline reads must be moved to the shared volume by default_components()."""
    base, defaults = base_parameters(), default_components()
    for name, pipeline in PipelineDag.from_registry(load_registry(PROJECT)).pipelines.items():
        moved = defaults.get(name)
        for dataset in pipeline.inputs():
            if not dataset.startswith("params:"):
                continue
            key = dataset.removeprefix("params:")
            value: Any = base
            for part in key.split("."):
                value = value.get(part, {}) if isinstance(value, dict) else {}
            for leaf, item in _leaves(value, key):
                if isinstance(item, str) and item.startswith("data/"):
                    assert moved and leaf in moved.params, (
                        f"{name}: parameter {leaf}={item} is on the pod's disk")
                    assert moved.params[leaf].startswith("{shared_root}/"), leaf
