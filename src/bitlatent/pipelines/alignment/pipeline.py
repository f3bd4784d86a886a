"""The ``alignment`` pipeline."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.alignment.nodes import train_alignment


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            train_alignment,
            inputs=["pairs", "decoder", "pretrain_latents", "adapted_latents", "params:alignment"],
            outputs=["text_to_latent", "alignment_curves", "alignment_curves_plot"],
            name="train_alignment",
        ),
    ])
