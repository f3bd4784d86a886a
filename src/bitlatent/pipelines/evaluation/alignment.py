"""Text side of the evaluation: retrieval, bit accuracy, and coherence of generated images."""

from __future__ import annotations

import json
import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bitlatent.pipelines.alignment.parameters import AlignmentConfig
from bitlatent.pipelines.evaluation.parameters import EvaluationConfig
from bitlatent.core.binary import pack_bits
from bitlatent.core.decoder import BinaryLatentDecoder
from bitlatent.core.train import decode_packed
from bitlatent.data.config import DataConfig
from bitlatent.data.latent_shards import LatentShard
from bitlatent.data.synthetic import SyntheticConfig, attribute_breakdown, is_heldout
from bitlatent.datasets.models import LatentParts
from bitlatent.data.lookup import images_table, load_images
from bitlatent.data.shards import ImageShards
from bitlatent.evaluation.generation_quality import (
    frechet_distance, latent_diversity, layout_diversity, scene_features, train_scene_features,
)
from bitlatent.pipelines.alignment.nodes import all_latents, alignment_data, with_extra_wordings
from bitlatent.reporting.plots import captioned_grid
from bitlatent.text.encoder import load_text_encoder
from bitlatent.text.feature_cache import TextFeatureCache
from bitlatent.text.generate import MODES, generate_from_features
from bitlatent.text.model import TextToLatent
from bitlatent.evaluation.alignment import alignment_scores

log = logging.getLogger(__name__)
SPLIT = "test"


def attribute_scores(pairs: pd.DataFrame, images: np.ndarray, synthetic: SyntheticConfig) -> dict[str, Any]:
    """The checker's accuracy on images generated from captions, split by whether the caption's
    (colour, shape) combinations were held out of training, and per attribute
    (``attributes_<unseen|seen>``: shape, colour, size, position, and the objects found at all)."""
    attributes = [json.loads(a) for a in pairs["attributes"]]
    unseen = np.array([is_heldout(a, synthetic) for a in attributes])
    scores: dict[str, Any] = {}
    for name, mask in (("unseen", unseen), ("seen", ~unseen)):
        if mask.any():
            chosen = [a for a, m in zip(attributes, mask) if m]
            breakdown = attribute_breakdown(images[mask], chosen)
            scores[f"attribute_accuracy_{name}"] = breakdown.pop("accuracy")
            scores[f"captions_{name}"] = int(mask.sum())
            scores[f"attributes_{name}"] = breakdown
    return scores


def training_library(latents: dict[str, LatentShard], splits: list[str], limit: int) -> np.ndarray:
    """Packed latents (M, bytes) of the training splits' images (at most ``limit``, in split and
    row order): what retrieve and refine search. Test images are never in it."""
    packed = [latents[s].bits for s in splits if s in latents]
    if not packed:
        raise ValueError(f"no latents for the training splits {splits}")
    return np.concatenate(packed)[:limit]


def collapse_scores(pairs: pd.DataFrame, rows: pd.DataFrame, image_shards: ImageShards, decoder: BinaryLatentDecoder,
                    text_to_latent: TextToLatent, cache: TextFeatureCache, encoder, by_mode: dict[str, np.ndarray], own: np.ndarray,
                    config: EvaluationConfig, train_splits: list[str], generate_options: dict[str, Any]) -> dict[str, Any]:
    """What attribute accuracy cannot show (``evaluation.generation_quality``): the diversity of
    ``generate``'s samples for the first ``diversity_captions`` captions (latents and, on the synthetic
    source, the checker's layouts), and the Fréchet distance of every mode's images (and of the test
    images' own latents, decoded: the floor) to the real test images, in the features of a network
    trained on the training splits' real images (synthetic source only)."""
    scores: dict[str, Any] = {}
    synthetic = pairs["attributes"].notna().all()
    n = min(config.diversity_captions, len(rows))
    if n and config.diversity_samples >= 2:
        features = cache.get(rows["caption"].tolist()[:n], encoder)
        drawn = generate_from_features(text_to_latent, features, "generate",
                                       samples=config.diversity_samples, **generate_options).bits
        drawn = drawn.reshape(n, config.diversity_samples, *drawn.shape[1:])  # (N, S, C, h, w)
        scores["latent_diversity"] = latent_diversity(drawn)
        if synthetic:
            images = decode_packed(decoder, pack_bits(drawn.reshape(-1, *drawn.shape[2:])))
            scores["layout_diversity"] = layout_diversity(images.reshape(n, config.diversity_samples, *images.shape[1:]))
        scores["diversity_captions"], scores["diversity_samples"] = n, config.diversity_samples
    if synthetic and config.scene_feature_epochs > 0:
        table = images_table(pairs)
        train_rows = table[table["split"].isin(train_splits)]
        attributes = dict(zip(pairs["image_id"], pairs["attributes"]))
        real_train = load_images(image_shards, table, train_rows["image_id"].to_numpy())
        network = train_scene_features(real_train, [json.loads(attributes[i]) for i in train_rows["image_id"]],
                                       epochs=config.scene_feature_epochs)
        real = scene_features(network, load_images(image_shards, table, rows["image_id"].to_numpy()))
        scores["frechet_distance"] = {name: frechet_distance(scene_features(network, images), real)
                                      for name, images in {**by_mode, "reconstructed": own}.items()}
    return scores


def evaluate_text(
    pairs: pd.DataFrame, image_shards: ImageShards, decoder: BinaryLatentDecoder, text_to_latent: TextToLatent,
    pretrain_latents: dict[str, LatentShard], adapted_latents: LatentParts,
    data: dict[str, Any], alignment: dict[str, Any], evaluation: dict[str, Any],
) -> tuple[dict, Figure]:
    """Text→image Recall@1/5/10 of the test captions among the test images (Hamming distance in
    the shared code space), bit accuracy of predicted latents, and images generated from test
    captions: their attribute accuracy on the synthetic source, and a grid.

    ``generation.attribute_accuracy_*`` is the generate mode (drawn from the cell prior when the
    model has one, else from the per-bit predictions, at ``generate_temperature``; ``generation.mode``
    says which); ``generation.by_mode``
    holds every mode (retrieve and refine search the training splits' latents), and
    ``generation.reconstructed`` the checker on the test images' own fitted latents, decoded: the
    ceiling the decoder sets for any mode."""
    config = EvaluationConfig.from_dict(evaluation)
    align = AlignmentConfig.from_dict(alignment)
    latents = all_latents(pretrain_latents, adapted_latents)
    if SPLIT not in latents:
        raise ValueError("no test latents: the test split is empty or latent_adaptation skipped it")
    encoder = load_text_encoder()
    cache = TextFeatureCache(align.feature_cache, max_length=text_to_latent.config.max_length)
    test = alignment_data(pairs, latents, [SPLIT], cache, encoder)
    # retrieval scores every caption of every test image (the synthetic source: its extra wordings too)
    synthetic = bool(len(pairs)) and pairs["attributes"].notna().all()
    captions = with_extra_wordings(pairs, [SPLIT], align.extra_wordings) if synthetic else pairs
    every_caption = alignment_data(captions, latents, [SPLIT], cache, encoder)
    metrics: dict[str, Any] = {"alignment": alignment_scores(text_to_latent, every_caption)}

    rows = pairs[pairs["split"] == SPLIT].sort_values("sample_id").iloc[: config.generated_captions]
    features = cache.get(rows["caption"].tolist(), encoder)
    library = training_library(latents, align.train_splits, config.library_images)
    has_prior = text_to_latent.prior is not None
    # refine draws cells from the prior as generate does; without one it flips the most confident bits
    temperature = {"generate": config.generate_temperature, "refine": config.generate_temperature if has_prior else 0.0}
    guidance = text_to_latent.config.prior_guidance if config.generate_guidance is None else config.generate_guidance
    by_mode = {mode: decode_packed(decoder, pack_bits(generate_from_features(
        text_to_latent, features, mode, library=library, temperature=temperature.get(mode, 0.0), seed=0,
        guidance=guidance, strength=config.refine_strength).bits)) for mode in MODES}  # fmt: skip
    own = decode_packed(decoder, pack_bits(test.latent_bits[test.image_index[: len(rows)]]))  # each caption's image
    generated = by_mode["generate"]  # (n, H, W, 3)
    source = "cell prior" if has_prior else "per-bit predictions"
    generator = f"{source}, temperature {config.generate_temperature:g}, seed 0"
    if has_prior:
        generator += f", guidance {guidance:g}"
    if rows["attributes"].notna().all() and len(rows):
        synthetic = SyntheticConfig.from_dict(DataConfig.from_dict(data).synthetic)
        metrics["generation"] = {
            **attribute_scores(rows, generated, synthetic), "mode": f"generate ({generator})",
            "by_mode": {mode: attribute_scores(rows, images, synthetic) for mode, images in by_mode.items()},
            # the ceiling the decoder allows: the test images' own fitted latents, decoded
            "reconstructed": attribute_scores(rows, own, synthetic),
            "library_images": len(library), "refine_strength": config.refine_strength,
        }
    metrics.setdefault("generation", {}).update(collapse_scores(
        pairs, rows, image_shards, decoder, text_to_latent, cache, encoder, by_mode, own, config, align.train_splits,
        {"temperature": config.generate_temperature, "guidance": guidance}) if len(rows) else {})
    log.info("text metrics: %s", metrics)
    # one row per caption: each mode, then the caption's own test image as its fitted latent decodes
    columns = {**by_mode, "own image": own}
    tiles, labels = [], []
    for i, caption in enumerate(rows["caption"].tolist()[: config.grid_images]):
        for name, images in columns.items():
            tiles.append(images[i])
            labels.append(f"{name}: {caption}")
    figure = captioned_grid(np.stack(tiles) if tiles else generated[:0], labels, "images from test captions",
                            columns=len(columns))
    return metrics, figure
