"""``data_validation``: raw image–caption rows → validated pairs table and image shards."""

from bitlatent.pipelines.data_validation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
