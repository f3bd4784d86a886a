"""Kubeflow Pipelines (KFP v2) for bitlatent, generated from the Kedro pipeline registry.

- ``dag``: registered pipelines -> a DAG through the datasets they share (Kedro only).
- ``compiler``: the KFP pipeline and ``compile_pipeline`` (imports ``kfp`` when called).
- ``cli``: the ``kubeflow`` click group (``bitlatent kubeflow compile -o pipeline.yaml``).

See deploy/kubeflow/README.md.
"""

from bitlatent.kubeflow.cli import kubeflow, main
from bitlatent.kubeflow.dag import PipelineDag, load_registry

__all__ = ["PipelineDag", "compile_pipeline", "kubeflow", "load_registry", "main"]


def compile_pipeline(*args, **kwargs):
    """See ``bitlatent.kubeflow.compiler.compile_pipeline`` (kfp is imported on first use)."""
    from bitlatent.kubeflow.compiler import compile_pipeline as _compile

    return _compile(*args, **kwargs)
