"""The ``latent_adaptation`` pipeline: run one job of n with
``--params "latent_adaptation.shard=3,latent_adaptation.num_shards=8"``."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.latent_adaptation.nodes import adapt_latents


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            adapt_latents,
            inputs=["image_shards", "pairs", "decoder", "latent_store", "params:latent_adaptation"],
            outputs="adapted_latents",
            name="adapt_latents",
        ),
    ])
