"""Reconstruction quality per split, capacity, and the rate–distortion comparison."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
import torch
from matplotlib.figure import Figure

from bitlatent.pipelines.evaluation.parameters import EvaluationConfig
from bitlatent.core.decoder import BinaryLatentDecoder
from bitlatent.core.train import decode_packed
from bitlatent.data.latent_shards import LatentShard
from bitlatent.data.lookup import images_table, load_images
from bitlatent.data.shards import ImageShards
from bitlatent.datasets.models import LatentParts
from bitlatent.evaluation.codecs import rate_distortion
from bitlatent.evaluation.reconstruction import reconstruction_scores
from bitlatent.reporting.plots import image_grid
from bitlatent.reporting.plots import rate_distortion as rate_distortion_plot

log = logging.getLogger(__name__)


def _subset(latents: LatentShard, limit: int | None) -> LatentShard:
    order = np.argsort(latents.image_ids, kind="stable")[:limit]
    return LatentShard(latents.bits[order], latents.image_ids[order], latents.spec)


def evaluate_reconstruction(
    image_shards: ImageShards, pairs: pd.DataFrame, decoder: BinaryLatentDecoder,
    pretrain_latents: dict[str, LatentShard], adapted_latents: LatentParts,
    decoder_capacity: dict, evaluation: dict[str, Any],
) -> tuple[dict, dict[str, list[dict]], Figure, Figure]:
    """Decode each split's latents and compare with the images; JPEG/WebP at the same bits.

    Only latents were fitted for adapt and test images: the decoder never trained on them.
    ``decoder_capacity`` is pretraining's report (decoder parameter bits against its latents' bits).
    """
    config = EvaluationConfig.from_dict(evaluation)
    table = images_table(pairs)
    latents = {**pretrain_latents, **adapted_latents.merged()}
    spec = next(iter(latents.values())).spec
    metrics: dict[str, Any] = {"reconstruction": {}}
    grid_rows, test_images = {}, None
    for split in ("pretrain", "adapt", "test"):
        if split not in latents:
            continue
        subset = _subset(latents[split], config.max_images_per_split)
        originals = load_images(image_shards, table, subset.image_ids)
        with torch.no_grad():
            decoded = decode_packed(decoder, subset.bits)
        metrics["reconstruction"][split] = reconstruction_scores(originals, decoded)
        grid_rows[split] = (originals[: config.grid_images], decoded[: config.grid_images])
        if split == "test":
            test_images = originals
        log.info("%s: %s", split, metrics["reconstruction"][split])

    total_images = sum(len(shard.bits) for shard in latents.values())
    metrics["capacity"] = {
        "bits_per_image": spec.bits_per_image,
        "bits_per_pixel": spec.bits_per_pixel,
        "latent_bits_total": spec.bits_per_image * total_images,
        "latent_bits_pretrain": decoder_capacity["total_latent_bits"],
        "decoder_param_bits": decoder_capacity["decoder_bits"],
        "decoder_parameters": decoder_capacity["decoder_parameters"],
        "decoder_to_pretrain_latent_ratio": decoder_capacity["ratio"],
        "receptive_field_cells": decoder_capacity["receptive_field_cells"],
    }
    ratio = decoder_capacity["decoder_bits"] / max(spec.bits_per_image * total_images, 1)
    if ratio > config.max_capacity_ratio:
        log.warning("decoder parameter bits are %.2fx all latent bits: the decoder can memorise", ratio)

    codec_curves, rd = {}, {"bits_per_image": spec.bits_per_image}
    if test_images is not None and len(test_images):
        rd = rate_distortion(test_images[: config.codec_images], metrics["reconstruction"]["test"]["psnr"],
                             spec.bits_per_image)
        codec_curves = rd["curves"]
    metrics["rate_distortion"] = rd
    ours_points = ([{"bits_per_image": spec.bits_per_image, "psnr": rd["bitlatent_test_psnr"]}]
                   if "bitlatent_test_psnr" in rd else [])
    rd_figure = rate_distortion_plot(codec_curves, ours_points,
                                f"{spec.image_size}x{spec.image_size} held-out test images")
    series = {codec: [{"bits_per_image": p["bits_per_image"], "psnr": p["psnr"]} for p in curve]
              for codec, curve in codec_curves.items()}
    series["bitlatent"] = ours_points
    return metrics, series, image_grid(grid_rows), rd_figure


def capacity_of(metrics: dict) -> dict:
    """The capacity report of a full run: ``metrics.json``'s capacity section (raw bits beside the
    entropy-coded stream sizes of the compression pipeline, the decoder's parameter bits, times)."""
    return dict(metrics["capacity"])


def write_metrics(*parts: dict) -> dict:
    """Merge the metric groups of every evaluation node into ``metrics.json``."""
    merged: dict[str, Any] = {}
    for part in parts:
        for key, value in part.items():
            if key in merged and isinstance(merged[key], dict) and isinstance(value, dict):
                merged[key] = {**merged[key], **value}
            else:
                merged[key] = value
    return merged
