"""Stage 2: latents fitted for the other splits with the decoder frozen, shard by shard."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from bitlatent.core.decoder import BinaryLatentDecoder
from bitlatent.core.runtime import reuse_freed_memory
from bitlatent.core.train import fit_latents
from bitlatent.data.latent_shards import LatentShard, save_latent_shard
from bitlatent.data.lookup import images_table, shard_image_ids
from bitlatent.data.shards import ImageShards
from bitlatent.datasets.models import LatentParts
from bitlatent.core.config import RESUME_FREE
from bitlatent.pipelines.latent_adaptation.parameters import AdaptationConfig
from bitlatent.runs import RunIdentity, code_digest, weights_digest

log = logging.getLogger(__name__)


def work_units(image_shards: ImageShards, splits: list[str], part: int, num_parts: int) -> list[tuple[str, int]]:
    """The (split, image shard) pairs job ``part`` of ``num_parts`` fits: every n-th one."""
    units = [(split, i) for split in splits for i in range(image_shards.num_shards(split))]
    return units[part::num_parts]


def adapt_latents(
    image_shards: ImageShards, pairs: pd.DataFrame, decoder: BinaryLatentDecoder,
    latent_store: LatentParts, latent_adaptation: dict[str, Any],
) -> dict:
    """Fit the latents of this job's image shards; finished shards are skipped on a rerun.

    Each latent shard is written atomically as soon as it is fitted; memory is one shard.
    Returns the job's summary, which marks the part as complete once saved.
    """
    config = AdaptationConfig.from_dict(latent_adaptation)
    train = config.train
    reuse_freed_memory()  # fitting frees and reallocates tens of MB a step
    spec = decoder.latent_spec
    identity = RunIdentity("latent_adaptation", {
        "decoder_sha256": weights_digest(decoder.state_dict()), "train": train.to_dict(),
        "image_shards": image_shards.index, "code": code_digest("core")}, free=RESUME_FREE)  # fmt: skip
    folder = latent_store.open_part(config.shard, config.num_shards, identity)
    table = images_table(pairs)
    units = work_units(image_shards, config.splits, config.shard, config.num_shards)
    summary = {"part": config.shard, "num_parts": config.num_shards, "bits_per_image": spec.bits_per_image,
               "shards": [], "skipped": 0, "images": 0, "seconds": 0.0}
    for split, index in tqdm(units, desc=f"latent_adaptation part {config.shard}/{config.num_shards}", unit="shard"):
        target = folder / split / f"shard-{index:05d}.npz"
        if target.is_file():
            summary["skipped"] += 1
            continue
        images = image_shards.shard(split, index)  # memmap (n, H, W, 3)
        ids = shard_image_ids(table, split, index, len(images))
        started = time.perf_counter()
        result = fit_latents(decoder, images, train)
        seconds = time.perf_counter() - started
        save_latent_shard(target, LatentShard(result.packed, ids, spec))
        summary["shards"].append({"split": split, "shard": index, "images": len(ids), "psnr": result.psnr,
                                  "seconds": round(seconds, 2)})
        summary["images"] += len(ids)
        summary["seconds"] += seconds
        log.info("%s shard %d: %d latents, %.2f dB, %.1f images/s", split, index, len(ids), result.psnr,
                 len(ids) / seconds)
    summary["images_per_second"] = summary["images"] / summary["seconds"] if summary["seconds"] else None
    summary["units"] = [f"{split}/{index}" for split, index in units]
    return summary
