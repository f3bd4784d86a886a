"""The entropy model trained on the fitted latents, and the test split's latents as real streams."""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import Any

import pandas as pd

from bitlatent.codec.entropy_model import EntropyModel, model_id, torch_logits, weights_bytes
from bitlatent.codec.entropy_train import entropy_identity, train_entropy_model
from bitlatent.codec.measure import stream_cost
from bitlatent.core.binary import unpack_bits
from bitlatent.data.latent_shards import LatentShard
from bitlatent.datasets.models import LatentParts
from bitlatent.pipelines.alignment.nodes import alignment_data, all_latents
from bitlatent.pipelines.compression.parameters import CompressionConfig
from bitlatent.runs import curve_records, run_folder
from bitlatent.text.encoder import load_text_encoder
from bitlatent.text.feature_cache import TextFeatureCache

log = logging.getLogger(__name__)


def train_entropy(pairs: pd.DataFrame, pretrain_latents: dict[str, LatentShard], adapted_latents: LatentParts,
                  compression: dict[str, Any]) -> tuple[EntropyModel, list[dict]]:  # fmt: skip
    """Train the entropy model on the train splits' captions and latents; the model and its curves."""
    config = CompressionConfig.from_dict(compression)
    latents = all_latents(pretrain_latents, adapted_latents)
    spec = next(iter(latents.values())).spec
    model_config = replace(config.model, latent_h=spec.h, latent_w=spec.w, bits_per_cell=spec.bits_per_cell)
    cache = TextFeatureCache(config.feature_cache, max_length=config.max_length)
    data = alignment_data(pairs, latents, config.train_splits, cache, load_text_encoder())
    checkpoint_dir = run_folder(config.checkpoint_root, entropy_identity(model_config, config.train, data))
    log.info("training the entropy model on %d captions (%d images)", len(data), len(data.latent_bits))
    result = train_entropy_model(data, model_config, config.train, checkpoint_dir)
    return result.model, curve_records(result.curves)


def evaluate_compression(pairs: pd.DataFrame, pretrain_latents: dict[str, LatentShard], adapted_latents: LatentParts,
                         entropy_model: EntropyModel, compression: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """The test split's latents compressed without a caption and given each image's first caption (by
    sample id), decompressed and checked: ``{"capacity": stream sizes and times, "compression": details}``,
    merged into metrics.json by the evaluation pipeline's ``write_metrics``."""
    config = CompressionConfig.from_dict(compression)
    shard = all_latents(pretrain_latents, adapted_latents)[config.test_split]
    spec = shard.spec
    bits = unpack_bits(shard.bits, spec)  # (n, C, h, w)
    first = pairs[pairs["split"] == config.test_split].sort_values("sample_id").drop_duplicates("image_id")
    caption_of = dict(zip(first["image_id"].astype(str), first["caption"]))
    missing = [i for i in shard.image_ids if str(i) not in caption_of]
    if missing:
        raise ValueError(f"{len(missing)} {config.test_split} latent(s) have no caption, e.g. {missing[0]!r}")
    cache = TextFeatureCache(config.feature_cache, max_length=config.max_length)
    states, mask = cache.get([caption_of[str(i)] for i in shard.image_ids], load_text_encoder()).padded()
    identity = model_id(weights_bytes(entropy_model))
    plain = stream_cost(bits, torch_logits(entropy_model), config.stages, identity)
    captioned = stream_cost(bits, torch_logits(entropy_model, states, mask), config.stages, identity)
    pixels = spec.image_size * spec.image_size
    log.info("%s: %.1f bits per image as streams (%.1f given a caption), %d raw",
             config.test_split, plain.bits_per_image, captioned.bits_per_image, spec.bits_per_image)
    return {
        "capacity": {
            "entropy_coded_bits_per_image": plain.bits_per_image,
            "entropy_coded_bits_per_pixel": plain.bits_per_image / pixels,
            "entropy_coded_bits_per_image_captioned": captioned.bits_per_image,
            "entropy_coded_bits_per_pixel_captioned": captioned.bits_per_image / pixels,
            "compress_ms_per_image": plain.compress_ms_per_image,
            "decompress_ms_per_image": plain.decompress_ms_per_image,
        },
        "compression": {
            "split": config.test_split,
            "images": int(len(bits)),
            "raw_bits_per_image": spec.bits_per_image,
            "stages": config.stages,
            "model_id": identity,
            "unconditional": plain.to_dict(),
            "captioned": captioned.to_dict(),
        },
    }
