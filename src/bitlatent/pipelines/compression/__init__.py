"""``compression`` pipeline."""

from bitlatent.pipelines.compression.pipeline import create_pipeline

__all__ = ["create_pipeline"]
