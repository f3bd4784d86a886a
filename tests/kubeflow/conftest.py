"""A fake registry of small Kedro pipelines with the real pipelines' names and the datasets that
link them (docs/architecture.md), and helpers that read a compiled KFP pipeline back as a DAG of
Kedro pipeline names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kedro.pipeline import Pipeline, node


def _node(inputs: list[str], outputs: list[str], name: str):
    def work(*args):
        return tuple(None for _ in outputs) if len(outputs) > 1 else None

    return node(work, inputs, outputs if len(outputs) > 1 else outputs[0], name=name)


def fake_registry() -> dict[str, Pipeline]:
    """The six pipelines, linked by the artifacts they pass on (real names where they exist)."""
    registry = {
        "data_validation": Pipeline([
            _node(["params:data"], ["staged_image_shards", "candidate_pairs", "rejected_pairs",
                                    "validation_report"], "ingest_pairs"),
            _node(["staged_image_shards", "candidate_pairs", "rejected_pairs",
                   "validation_report", "params:data"], ["image_shards", "pairs"], "accept_pairs"),
        ]),
        "decoder_pretraining": Pipeline([
            _node(["pairs", "image_shards", "params:decoder_pretraining"],
                  ["latent_spec", "decoder", "pretrain_latents"], "pretrain_decoder"),
            _node(["decoder", "pretrain_latents", "image_shards"], ["pretraining_report"],
                  "report_pretraining"),
        ]),
        "latent_adaptation": Pipeline([
            _node(["pairs", "image_shards", "decoder", "latent_spec", "params:latent_adaptation"],
                  ["adapted_latents"], "fit_latents"),
        ]),
        "alignment": Pipeline([
            _node(["pairs", "pretrain_latents", "adapted_latents", "latent_spec",
                   "params:alignment"], ["text_to_latent"], "align_text"),
        ]),
        "evaluation": Pipeline([
            _node(["pairs", "image_shards", "decoder", "adapted_latents", "text_to_latent",
                   "params:evaluation"], ["metrics"], "evaluate"),
        ]),
        "export": Pipeline([
            _node(["decoder", "text_to_latent", "latent_spec", "params:export"],
                  ["onnx_export"], "export_onnx"),
        ]),
    }
    registry["__default__"] = sum(registry.values(), Pipeline([]))
    return registry


# Who waits for whom in the fake registry, written out by hand (every direct link).
EXPECTED_UPSTREAM = {
    "data_validation": set(),
    "decoder_pretraining": {"data_validation"},
    "latent_adaptation": {"data_validation", "decoder_pretraining"},
    "alignment": {"data_validation", "decoder_pretraining", "latent_adaptation"},
    "evaluation": {"data_validation", "decoder_pretraining", "latent_adaptation", "alignment"},
    "export": {"decoder_pretraining", "alignment"},
}
GPU_PIPELINES = {"decoder_pretraining", "latent_adaptation", "alignment"}


@pytest.fixture
def registry() -> dict[str, Pipeline]:
    return fake_registry()


class Compiled:
    """A compiled pipeline YAML, read back by Kedro pipeline name (the tasks' display names)."""

    def __init__(self, path: Path):
        docs = list(yaml.safe_load_all(path.read_text()))
        self.spec: dict[str, Any] = docs[0]
        self.platform: dict[str, Any] = docs[1] if len(docs) > 1 else {}
        self.root_tasks: dict[str, dict] = self.spec["root"]["dag"]["tasks"]
        self.loops: dict[str, dict] = {}  # pipeline -> the ParallelFor task around it
        self.tasks: dict[str, dict] = {}  # pipeline -> its task
        self._pipeline_of_root_task: dict[str, str] = {}
        for key, task in self.root_tasks.items():
            if "parameterIterator" in task:
                inner = self.spec["components"][task["componentRef"]["name"]]["dag"]["tasks"]
                assert len(inner) == 1, inner
                (inner_task,) = inner.values()
                name = inner_task["taskInfo"]["name"]
                self.loops[name] = task
                self.tasks[name] = inner_task
            else:
                name = task["taskInfo"]["name"]
                self.tasks[name] = task
            self._pipeline_of_root_task[key] = name

    @property
    def pipelines(self) -> set[str]:
        return set(self.tasks)

    def upstream(self, name: str) -> set[str]:
        """Pipelines that ``name`` runs after (through its loop, if it fans out)."""
        task = self.loops.get(name, self.tasks[name])
        inner = self.tasks[name].get("dependentTasks", []) if name in self.loops else []
        assert not inner, "a task inside a ParallelFor must not depend on its siblings"
        return {self._pipeline_of_root_task[d] for d in task.get("dependentTasks", [])}

    def executor(self, name: str) -> dict:
        component = self.spec["components"][self.tasks[name]["componentRef"]["name"]]
        return self.spec["deploymentSpec"]["executors"][component["executorLabel"]]["container"]

    def k8s(self, name: str) -> dict:
        component = self.spec["components"][self.tasks[name]["componentRef"]["name"]]
        executors = self.platform.get("platforms", {}).get("kubernetes", {}).get(
            "deploymentSpec", {}).get("executors", {})
        return executors.get(component["executorLabel"], {})

    def params_arg(self, name: str) -> str:
        args = self.executor(name)["args"]
        return args[args.index("--params") + 1]
