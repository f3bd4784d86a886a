"""The compiled pipeline of the real project, replayed without a cluster: each component's
`kedro run` arguments, read from the YAML, run in DAG order in a fresh Kedro session (one
"pod" each, every latent_adaptation shard on its own), with a local folder as the bucket and
another as the shared volume. Nothing may pass between pods except through conf/k8s.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import yaml
from kedro.framework.cli.utils import _split_params
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from bitlatent.kubeflow import compile_pipeline
from bitlatent.kubeflow.compiler import default_components
from bitlatent.kubeflow.dag import PipelineDag, load_registry
from tests.kubeflow.conftest import PROJECT, Compiled

NUM_SHARDS = 2
# Small enough to run in seconds; applied over conf/base as a conf/k8s parameters file.
TINY = {
    "data": {"image_size": 32, "max_pairs": 240, "rows_per_shard": 40, "chunk_rows": 120},
    "decoder": {"latent_h": 8, "latent_w": 8, "bits_per_cell": 8, "widths": [32, 24, 16],
                "blocks_per_stage": [1, 1, 1]},
    "pretraining": {"train": {"epochs": 3, "batch_size": 16, "checkpoint_every": 20,
                              "progress": False}},
    "latent_adaptation": {"train": {"fit_steps": 5, "fit_batch_size": 64, "progress": False}},
    "evaluation": {"codec_images": 8, "grid_images": 4},
}


def _merge(base: dict, update: dict) -> dict:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(base.get(key, {}), value) if isinstance(value, dict) else value
    return out


def _base_parameters() -> dict[str, Any]:
    params: dict[str, Any] = {}
    for path in sorted((PROJECT / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def _order(compiled: Compiled) -> list[str]:
    done: list[str] = []
    while len(done) < len(compiled.pipelines):
        ready = sorted(n for n in compiled.pipelines - set(done)
                       if compiled.upstream(n) <= set(done))
        done.append(ready[0])
    return done


def _leaves(value: Any, prefix: str):
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _leaves(child, f"{prefix}.{key}")
    else:
        yield prefix, value


def test_no_parameter_leaves_a_path_on_the_pods_disk():
    """A `data/...` path in parameters would land on the pod's own disk and vanish with it:
    each one a pipeline reads must be moved to the shared volume by default_components()."""
    base, defaults = _base_parameters(), default_components()
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


def test_the_compiled_pipeline_runs_pod_by_pod(tmp_path: Path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, project / name)
    shutil.copytree(PROJECT / "conf", project / "conf", ignore=shutil.ignore_patterns("local"))
    (project / "conf" / "local").mkdir()
    (project / "src").mkdir()  # the package is imported from the installed project
    tiny = {key: _merge(value, TINY[key]) for key, value in _base_parameters().items()
            if key in TINY}
    (project / "conf" / "k8s" / "parameters_tiny.yml").write_text(yaml.safe_dump(tiny))

    bucket, shared = tmp_path / "bucket", tmp_path / "shared"
    output = compile_pipeline(tmp_path / "pipeline.yaml", "bitlatent-pipeline:test", NUM_SHARDS,
                              project_path=project, shared_root=str(shared))
    compiled = Compiled(output)
    run = {"storage_root": f"file://{bucket}", "kedro_params": ""}

    monkeypatch.chdir(project)  # the pod's working directory: /app in the image
    bootstrap_project(project)
    ran = []
    for name in _order(compiled):
        container = compiled.executor(name)
        assert container["command"] == ["kedro"] and container["args"][0] == "run"
        shards = range(NUM_SHARDS) if name in compiled.loops else [None]
        for shard in shards:
            values = {**run, "shard": str(shard)}
            args = [re.sub(r"\{\{\$\.inputs\.parameters\['(\w+)'\]\}\}",
                           lambda m: values[m.group(1)], a) for a in container["args"]]
            options = dict(zip(args[1::2], args[2::2]))
            params = _split_params(None, None, options["--params"])
            with KedroSession.create(project, env=options["--env"], runtime_params=params) as s:
                s.run(pipeline_names=options["--pipelines"].split(","))
            ran.append((name, shard))

    assert ran[0] == ("data_validation", None)
    assert not (project / "data").exists(), "a pod wrote to its own disk"
    assert (bucket / "03_primary" / "pairs.parquet").is_file()
    assert (shared / "03_primary" / "image_shards" / "index.json").is_file()
    if "latent_adaptation" in compiled.loops:
        parts = sorted(p.name for p in (shared / "07_model_output" / "latents").glob("part-*"))
        assert parts == [f"part-{i}-of-{NUM_SHARDS}" for i in range(NUM_SHARDS)]
    if "evaluation" in compiled.pipelines:
        assert (bucket / "08_reporting" / "metrics.json").is_file()
