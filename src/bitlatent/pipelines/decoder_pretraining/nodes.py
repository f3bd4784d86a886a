"""Stage 1: the decoder and the pretrain split's latents, trained jointly."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bitlatent.core.capacity import capacity_report
from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, FitRecipe, attach_fit_recipe
from bitlatent.core.train import TrainConfig, pretrain, pretrain_identity
from bitlatent.data.latent_shards import LatentShard
from bitlatent.data.lookup import images_table, shard_image_ids
from bitlatent.data.shards import ImageShards
from bitlatent.pipelines.decoder_pretraining.parameters import PretrainingConfig
from bitlatent.reporting.plots import training_curves
from bitlatent.runs import curve_records, run_folder

log = logging.getLogger(__name__)
SPLIT = "pretrain"


def pretrain_decoder(
    image_shards: ImageShards, pairs: pd.DataFrame, decoder: dict[str, Any], pretraining: dict[str, Any],
    latent_adaptation: dict[str, Any],
) -> tuple[BinaryLatentDecoder, dict, dict[str, LatentShard], list[dict], Figure, dict]:
    """Train the decoder with the latents of every ``pretrain`` image.

    ``latent_adaptation.train`` is saved with the decoder as its ``FitRecipe``, so
    ``bitlatent encode`` / ``evaluate`` fit as latent_adaptation does; it is not part of the
    checkpoint folder's key, so a change of the fitting settings alone never restarts pretraining.

    Returns the decoder (with its recipe), the latent spec, the pretrain latents (one latent shard per image
    shard), the training curves, their plot and the capacity report. Under ``torchrun``
    (``decoder_pretraining.distributed``) every rank runs this node; ranks other than 0 return Nones.
    """
    config = PretrainingConfig.from_dict(pretraining)
    train = config.train
    decoder_config = DecoderConfig.from_dict({**decoder, "image_size": image_shards.image_size})
    shard_rows = [len(image_shards.shard(SPLIT, i)) for i in range(image_shards.num_shards(SPLIT))]
    if not shard_rows:
        raise ValueError("the pretrain split has no images: check data.splits")
    table = images_table(pairs)
    ids = [shard_image_ids(table, SPLIT, i, rows) for i, rows in enumerate(shard_rows)]
    images = np.concatenate([np.asarray(image_shards.shard(SPLIT, i)) for i in range(len(shard_rows))])

    data = {"image_shards": image_shards.index, "ids": [list(map(str, chunk[:3])) + [len(chunk)] for chunk in ids]}
    checkpoint_dir = run_folder(config.checkpoint_root, pretrain_identity(decoder_config, train, images, data=data))
    log.info("pretraining on %d images, checkpoints in %s", len(images), checkpoint_dir)
    result = pretrain(images, decoder_config, train, checkpoint_dir=checkpoint_dir, data=data)
    if result.latents is None:  # a rank other than 0 under torchrun (``distributed``): rank 0 writes
        return None, None, None, None, None, None

    attach_fit_recipe(result.decoder, FitRecipe.from_train(
        TrainConfig.from_dict(latent_adaptation.get("train"), "latent_adaptation.train")))
    spec = result.decoder.latent_spec
    packed = result.latents.packed()  # (N, bytes), row i <-> images[i]
    latents, start = {}, 0
    for i, chunk in enumerate(ids):
        latents[f"{SPLIT}/shard-{i:05d}"] = LatentShard(packed[start:start + len(chunk)], chunk, spec)
        start += len(chunk)

    capacity = capacity_report(spec, len(images), result.decoder).to_dict()  # warns when it exceeds
    capacity["receptive_field_cells"] = result.decoder.receptive_field_cells()
    figure = training_curves(result.curves, f"decoder pretraining: {len(images)} images, "
                                            f"{spec.bits_per_image} bits/image")
    return result.decoder, spec.to_dict(), latents, curve_records(result.curves), figure, capacity
