"""The ``data_validation`` pipeline."""

from kedro.pipeline import Pipeline, node

from bitlatent.pipelines.data_validation.nodes import accept_pairs, ingest_pairs


def create_pipeline(**kwargs) -> Pipeline:
    return Pipeline([
        node(
            ingest_pairs,
            inputs="params:data",
            outputs=["staged_image_shards", "candidate_pairs", "rejected_pairs", "validation_report"],
            name="ingest_pairs",
        ),
        node(
            accept_pairs,
            inputs=["staged_image_shards", "candidate_pairs", "rejected_pairs",
                    "validation_report", "params:data"],
            outputs=["image_shards", "pairs"],
            name="accept_pairs",
        ),
    ])
