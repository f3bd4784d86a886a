"""The ``export`` pipeline: decoder + text model -> ONNX bundle (``data/06_models/onnx``)."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.export.nodes import export_onnx


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            export_onnx,
            inputs=["decoder", "text_to_latent", "pretrain_latents", "adapted_latents", "entropy_model",
                    "params:export"],
            outputs=["onnx_bundle", "export_report"],
            name="export_onnx",
        ),
    ])
