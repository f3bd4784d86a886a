"""The ``decoder_pretraining`` pipeline."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.decoder_pretraining.nodes import pretrain_decoder


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            pretrain_decoder,
            inputs=["image_shards", "pairs", "params:decoder", "params:pretraining",
                    "params:latent_adaptation"],
            outputs=["decoder", "latent_spec", "pretrain_latents", "pretraining_curves",
                     "pretraining_curves_plot", "decoder_capacity"],
            name="pretrain_decoder",
        ),
    ])
