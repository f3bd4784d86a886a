"""The compiled pipeline of the real project, replayed without a cluster: each component's
`kedro run` arguments, read from the YAML, run in DAG order in a fresh Kedro session (one
"pod" each, every latent_adaptation shard on its own), with a local folder as the bucket and
another as the shared volume. Nothing may pass between pods except through conf/k8s.
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from kedro.framework.cli.utils import _split_params
from kedro.framework.session import KedroSession
from kedro.framework.startup import bootstrap_project

from bitlatent.kubeflow import compile_pipeline
from tests.kubeflow.conftest import Compiled
from tests.tiny_project import PROJECT, TINY_PARAMETERS, copy_project

NUM_SHARDS = 2


def _order(compiled: Compiled) -> list[str]:
    done: list[str] = []
    while len(done) < len(compiled.pipelines):
        ready = sorted(n for n in compiled.pipelines - set(done)
                       if compiled.upstream(n) <= set(done))
        done.append(ready[0])
    return done


def test_the_compiled_pipeline_runs_pod_by_pod(tmp_path: Path, monkeypatch):
    project = copy_project(tmp_path / "project")
    # the tiny project's parameters as a conf/k8s file (merged key by key over conf/base)
    (project / "conf" / "k8s" / "parameters_tiny.yml").write_text(yaml.safe_dump(TINY_PARAMETERS))

    bucket, shared = tmp_path / "bucket", tmp_path / "shared"
    # replayed here on the CPU: the CPU compile (pods run --env k8s, no GPU requested)
    output = compile_pipeline(tmp_path / "pipeline.yaml", "bitlatent-pipeline:test", NUM_SHARDS,
                              project_path=project, shared_root=str(shared), gpu=False)
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
