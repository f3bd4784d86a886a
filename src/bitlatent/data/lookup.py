"""Join the pairs table with the image shards: which image id sits in which shard row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from bitlatent.data.shards import ImageShards


def images_table(pairs: pd.DataFrame) -> pd.DataFrame:
    """One row per image: ``image_id, split, shard, row`` (captions collapsed)."""
    return (pairs[["image_id", "split", "shard", "row"]].drop_duplicates("image_id")
            .sort_values(["split", "shard", "row"]).reset_index(drop=True))


def shard_image_ids(images: pd.DataFrame, split: str, shard: int, expected_rows: int) -> np.ndarray:
    """The image ids of one shard in row order; fails when the table and the shard disagree."""
    rows = images[(images["split"] == split) & (images["shard"] == shard)].sort_values("row")
    if len(rows) != expected_rows or not np.array_equal(rows["row"].to_numpy(), np.arange(expected_rows)):
        raise ValueError(
            f"pairs table and image shards disagree on {split}/shard {shard}: {len(rows)} image ids "
            f"for {expected_rows} rows. Re-run `kedro run --pipelines data_validation`.")
    return rows["image_id"].to_numpy(dtype=str)


def load_images(shards: ImageShards, images: pd.DataFrame, image_ids: np.ndarray) -> np.ndarray:
    """uint8 (n, H, W, 3) for the given image ids, in their order."""
    located = images.set_index("image_id").loc[list(image_ids)]
    out = np.empty((len(image_ids), shards.image_size, shards.image_size, 3), np.uint8)
    for (split, shard), group in located.reset_index().groupby(["split", "shard"], sort=False):
        positions = located.index.get_indexer(group["image_id"])
        out[positions] = shards.images(split, int(shard), group["row"].to_numpy())
    return out
