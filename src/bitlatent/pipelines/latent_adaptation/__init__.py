"""``latent_adaptation`` pipeline."""

from bitlatent.pipelines.latent_adaptation.pipeline import create_pipeline

__all__ = ["create_pipeline"]
