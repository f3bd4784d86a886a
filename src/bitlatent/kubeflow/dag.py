"""The Kedro pipeline registry as a DAG of pipelines, one node per registered pipeline.

A pipeline ``B`` runs after a pipeline ``A`` when ``B`` consumes a dataset that ``A``
produces. On a cluster each pipeline runs in its own pod, so every dataset a pipeline reads
from outside itself must be persisted by the cluster catalog (``conf/k8s``), never a
``MemoryDataset`` nor a pod-local path: ``unshared_inputs`` finds those before anything is
submitted.

No KFP import here: this module only needs Kedro.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from kedro.pipeline import Pipeline

# The order `kedro run` runs them in (docs/architecture.md); breaks ties between independent
# pipelines so the compiled YAML is stable. Pipelines not listed come after, by name.
DESIGN_ORDER = (
    "data_validation",
    "decoder_pretraining",
    "latent_adaptation",
    "alignment",
    "evaluation",
    "export",
)
EXCLUDED = frozenset({"__default__"})
_MEMORY_TYPES = frozenset({"MemoryDataset", "SharedMemoryDataset"})


def is_parameter(name: str) -> bool:
    return name == "parameters" or name.startswith("params:")


def load_registry(project_path: Path | str) -> dict[str, Pipeline]:
    """The project's registered pipelines, through Kedro's own ``bootstrap_project``.

    ``pipeline_registry.register_pipelines`` uses ``find_pipelines``, so a new folder under
    ``bitlatent/pipelines`` shows up here without editing any list.
    """
    from kedro.framework.project import pipelines
    from kedro.framework.startup import bootstrap_project

    bootstrap_project(Path(project_path))
    return dict(pipelines)


@dataclass
class PipelineDag:
    """Registered pipelines (``__default__`` and ``excluded`` left out) and their order.

    ``upstream[name]`` maps each pipeline that must finish before ``name`` to the datasets
    that link them.
    """

    pipelines: dict[str, Pipeline]
    upstream: dict[str, dict[str, set[str]]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    @classmethod
    def from_registry(
        cls, registry: Mapping[str, Pipeline], excluded: Iterable[str] = ()
    ) -> PipelineDag:
        skip = EXCLUDED | set(excluded)
        pipelines = {name: p for name, p in registry.items() if name not in skip}
        producers: dict[str, set[str]] = {}
        for name, pipeline in pipelines.items():
            for dataset in pipeline.all_outputs():
                producers.setdefault(_untranscoded(dataset), set()).add(name)
        upstream: dict[str, dict[str, set[str]]] = {name: {} for name in pipelines}
        for name, pipeline in pipelines.items():
            for dataset in external_inputs(pipeline):
                for producer in producers.get(_untranscoded(dataset), ()):
                    if producer != name:
                        upstream[name].setdefault(producer, set()).add(dataset)
        return cls(pipelines, upstream, _topological_order(upstream))

    def dependencies(self, name: str) -> list[str]:
        """The pipelines ``name`` waits for, in run order."""
        return [p for p in self.order if p in self.upstream[name]]

    def edges(self) -> set[tuple[str, str]]:
        """Every ``(upstream, downstream)`` pair."""
        return {(up, down) for down, ups in self.upstream.items() for up in ups}


def external_inputs(pipeline: Pipeline) -> set[str]:
    """Datasets the pipeline reads but does not make itself (parameters left out)."""
    return {name for name in pipeline.inputs() if not is_parameter(name)}


def _untranscoded(name: str) -> str:
    """``pairs@pandas`` and ``pairs@spark`` are one dataset (Kedro transcoding)."""
    return name.split("@", 1)[0]


def _rank(name: str) -> tuple[int, str]:
    index = DESIGN_ORDER.index(name) if name in DESIGN_ORDER else len(DESIGN_ORDER)
    return index, name


def _topological_order(upstream: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Kahn's algorithm, ties broken by ``DESIGN_ORDER`` then name; a cycle is an error."""
    waiting = {name: set(ups) for name, ups in upstream.items()}
    order: list[str] = []
    while waiting:
        ready = sorted((n for n, ups in waiting.items() if not ups), key=_rank)
        if not ready:
            cycle = ", ".join(f"{n} <- {sorted(ups)}" for n, ups in sorted(waiting.items()))
            raise ValueError(f"the pipelines' datasets form a cycle: {cycle}")
        name = ready[0]
        order.append(name)
        del waiting[name]
        for ups in waiting.values():
            ups.discard(name)
    return order


def unshared_inputs(dag: PipelineDag, catalog_config: Mapping[str, Any],
                    shared_root: str | None = None) -> dict[str, set[str]]:
    """Per pipeline, the datasets it reads from outside itself that another pod could not
    have written: kept in memory (absent from the catalog, or a ``MemoryDataset``), or on a
    local path that is neither remote (``s3://``, ``gs://``, ...) nor under ``shared_root``
    (the volume every pod mounts).

    ``catalog_config`` is the resolved catalog of the cluster environment, as
    ``OmegaConfigLoader(...)["catalog"]`` returns it; dataset factories are matched too. A
    dataset with neither ``filepath`` nor ``path`` (a database table, say) is trusted.
    """
    from kedro.io.catalog_config_resolver import CatalogConfigResolver

    resolver = CatalogConfigResolver(
        config=dict(catalog_config),
        default_runtime_patterns={"{default}": {"type": "kedro.io.MemoryDataset"}},
    )
    missing: dict[str, set[str]] = {}
    for name, pipeline in dag.pipelines.items():
        for dataset in external_inputs(pipeline):
            if not _shared(resolver.resolve_pattern(dataset), shared_root):
                missing.setdefault(name, set()).add(dataset)
    return missing


def _shared(config: Mapping[str, Any], shared_root: str | None) -> bool:
    if str(config.get("type", "MemoryDataset")).rsplit(".", 1)[-1] in _MEMORY_TYPES:
        return False
    location = config.get("filepath", config.get("path"))
    if location is None:
        return True
    protocol, _, rest = str(location).rpartition("://")
    if protocol not in ("", "file", "local"):
        return True
    return shared_root is not None and PurePosixPath(rest).is_relative_to(shared_root)
