"""Every pipeline under ``bitlatent.pipelines`` is found; ``kedro run`` runs them all."""

from __future__ import annotations

from kedro.framework.project import find_pipelines
from kedro.pipeline import Pipeline


def register_pipelines() -> dict[str, Pipeline]:
    """Map each pipeline folder's name to its ``Pipeline``; ``__default__`` is their union."""
    pipelines = find_pipelines(raise_errors=True)
    pipelines["__default__"] = sum(pipelines.values(), Pipeline([]))
    return pipelines
