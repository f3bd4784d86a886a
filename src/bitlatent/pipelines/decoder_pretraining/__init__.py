"""``decoder_pretraining`` pipeline."""

from bitlatent.pipelines.decoder_pretraining.pipeline import create_pipeline

__all__ = ["create_pipeline"]
