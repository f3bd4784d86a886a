"""The ``evaluation`` pipeline: everything in ``data/08_reporting/metrics.json``, and its capacity section
as the capacity report ``data/08_reporting/capacity.json``."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.evaluation.alignment import evaluate_text
from bitlatent.pipelines.evaluation.nodes import capacity_of, evaluate_reconstruction, write_metrics


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            evaluate_reconstruction,
            inputs=["image_shards", "pairs", "decoder", "pretrain_latents", "adapted_latents",
                    "decoder_capacity", "params:evaluation"],
            outputs=["reconstruction_metrics", "rate_distortion_curves", "reconstruction_grid",
                     "rate_distortion_plot"],
            name="evaluate_reconstruction",
        ),
        node(
            evaluate_text,
            inputs=["pairs", "image_shards", "decoder", "text_to_latent", "pretrain_latents", "adapted_latents",
                    "params:data", "params:alignment", "params:evaluation"],
            outputs=["text_metrics", "generation_grid"],
            name="evaluate_text",
        ),
        node(write_metrics, inputs=["reconstruction_metrics", "text_metrics", "compression_metrics"], outputs="metrics",
             name="write_metrics"),
        node(capacity_of, inputs="metrics", outputs="capacity", name="write_capacity_report"),
    ])
