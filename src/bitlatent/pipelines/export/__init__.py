"""``export`` pipeline."""

from bitlatent.pipelines.export.pipeline import create_pipeline

__all__ = ["create_pipeline"]
