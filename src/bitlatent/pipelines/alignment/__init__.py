"""``alignment`` pipeline."""

from bitlatent.pipelines.alignment.pipeline import create_pipeline

__all__ = ["create_pipeline"]
