"""Text in the shared binary space: MiniLM features → text-to-latent model."""

from __future__ import annotations

import json
import logging
import math
import zlib
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bitlatent.core.binary import unpack_bits
from bitlatent.core.decoder import BinaryLatentDecoder
from bitlatent.data.latent_shards import LatentShard
from bitlatent.data.synthetic import reword
from bitlatent.datasets.models import LatentParts
from bitlatent.pipelines.alignment.parameters import AlignmentConfig
from bitlatent.reporting.plots import training_curves
from bitlatent.runs import curve_records, run_folder
from bitlatent.text.encoder import load_text_encoder
from bitlatent.text.feature_cache import TextFeatureCache
from bitlatent.text.model import TextToLatent
from bitlatent.text.train import AlignmentData, text_identity, train_text_to_latent

log = logging.getLogger(__name__)


def all_latents(pretrain_latents: dict[str, LatentShard], adapted_latents: LatentParts) -> dict[str, LatentShard]:
    """Every split's fitted latents: pretraining's and every finished adaptation part's."""
    return {**pretrain_latents, **adapted_latents.merged()}


def with_extra_wordings(pairs: pd.DataFrame, splits: list[str], count: int) -> pd.DataFrame:
    """``pairs`` plus ``count`` reworded captions of every pair in ``splits`` (synthetic source:
    ``data.synthetic.reword`` from the pair's attributes, keyed by its sample id), each a new row
    of the same image with sample id ``<sample_id>-w<k>``. Other splits are left as they are."""
    if count <= 0:
        return pairs
    rows = pairs[pairs["split"].isin(splits)]
    if "attributes" not in rows or rows["attributes"].isna().any():
        raise ValueError("alignment.extra_wordings needs the synthetic source's attributes to reword captions: "
                         "set it to 0 for other sources")  # fmt: skip
    reworded = rows.iloc[np.repeat(np.arange(len(rows)), count)].copy()  # each row count times, in order
    reworded["caption"] = [caption for sample_id, attributes in zip(rows["sample_id"], rows["attributes"])
                           for caption in reword(json.loads(attributes), zlib.crc32(str(sample_id).encode()), count)]
    reworded["sample_id"] = [f"{sample_id}-w{k}" for sample_id in rows["sample_id"] for k in range(1, count + 1)]
    return pd.concat([pairs, reworded[pairs.columns]], ignore_index=True)


def alignment_data(pairs: pd.DataFrame, latents: dict[str, LatentShard], splits: list[str],
                   cache: TextFeatureCache, encoder, max_captions: int | None = None) -> AlignmentData:
    """Captions of ``splits`` paired (by image id) with their images' fitted latent bits."""
    rows = pairs[pairs["split"].isin(splits)].sort_values("sample_id")
    if max_captions is not None:
        rows = rows.iloc[:max_captions]
    present = [s for s in splits if s in latents]
    if not present or rows.empty:
        raise ValueError(f"no captions with latents in splits {splits}: run the earlier pipelines first")
    bits = np.concatenate([unpack_bits(latents[s].bits, latents[s].spec) for s in present])
    ids = np.concatenate([latents[s].image_ids for s in present])
    features = cache.get(rows["caption"].tolist(), encoder)
    return AlignmentData.from_ids(features, rows["image_id"].tolist(), bits, ids)


def train_alignment(
    pairs: pd.DataFrame, decoder: BinaryLatentDecoder, pretrain_latents: dict[str, LatentShard],
    adapted_latents: LatentParts, alignment: dict[str, Any],
) -> tuple[TextToLatent, list[dict], Figure]:
    """Train the text-to-latent model on the train splits' captions, validated on ``val_split``.
    ``decoder``: the latents' decoder, which an image code reading renders keeps a copy of."""
    config = AlignmentConfig.from_dict(alignment)
    train = config.train
    latents = all_latents(pretrain_latents, adapted_latents)
    spec = next(iter(latents.values())).spec
    encoder = load_text_encoder()
    model_config = replace(config.model, latent_h=spec.h, latent_w=spec.w, bits_per_cell=spec.bits_per_cell,
                           image_size=spec.image_size, encoder_revision=encoder.info.revision)
    cache = TextFeatureCache(config.feature_cache, max_length=model_config.max_length)
    training_pairs = with_extra_wordings(pairs, config.train_splits, config.extra_wordings)
    data = alignment_data(training_pairs, latents, config.train_splits, cache, encoder, config.max_captions)
    val = (alignment_data(pairs, latents, [config.val_split], cache, encoder)
           if config.val_split in latents else None)
    checkpoint_dir = run_folder(config.checkpoint_root, text_identity(model_config, train, data))
    log.info("training text-to-latent on %d captions (%d images)", len(data), len(data.latent_bits))
    result = train_text_to_latent(data, model_config, train, val=val, renderer=decoder, checkpoint_dir=checkpoint_dir)
    figure = training_curves({"step": result.curves["step"], "loss": result.curves["loss"],
                              "psnr": result.curves["bit_accuracy"]}, "text-to-latent training")
    figure.axes[1].set(ylabel="bit accuracy", title="batch bit accuracy")
    figure.axes[0].set(title="loss: bits and prior, then the codes (contrastive)")
    records = curve_records(result.curves, ["step", "epoch", "loss", "bce", "contrastive", "prior_ce", "bit_accuracy", "lr"])
    # the code phase predicts no bits: its bit accuracy is NaN, written as null (JSON has no NaN)
    records = [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in r.items()} for r in records]
    return result.model, records, figure
