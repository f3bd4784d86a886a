"""The ``compression`` pipeline: the entropy model, and what the test split's latents cost as streams."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.compression.nodes import evaluate_compression, train_entropy


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            train_entropy,
            inputs=["pairs", "pretrain_latents", "adapted_latents", "params:compression"],
            outputs=["entropy_model", "compression_curves"],
            name="train_entropy_model",
        ),
        node(
            evaluate_compression,
            inputs=["pairs", "pretrain_latents", "adapted_latents", "entropy_model", "params:compression"],
            outputs="compression_metrics",
            name="evaluate_compression",
        ),
    ])
