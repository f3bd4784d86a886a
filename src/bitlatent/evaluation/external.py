"""Evaluate the trained models on an external held-out set, training nothing on it.

The set goes through the same ingest and validation as the pipelines (all rows in one
``test`` split, image paths found as docs/data.md says), latents are fitted for its images with
the frozen decoder, its captions are embedded, and reconstruction and alignment metrics are
computed for it alone, under the names and protocol of the ``evaluation`` pipeline's test split
(``reconstruction``, ``rate_distortion``, ``alignment``). Latents are fitted with the decoder's
fitting recipe unless told otherwise; ``fit_recipe`` says which values were used and where each
came from. Every rejected row is in the result with its reasons.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bitlatent.core.binary import unpack_bits
from bitlatent.core.decoder import BinaryLatentDecoder, ChosenFit, FitRecipe, choose_fit
from bitlatent.core.train import decode_packed, fit_latents
from bitlatent.data.config import DataConfig
from bitlatent.data.ingest import IngestResult, ingest
from bitlatent.data.latent_shards import LatentShard
from bitlatent.data.lookup import images_table, shard_image_ids
from bitlatent.data.shards import ImageShards
from bitlatent.evaluation.alignment import alignment_scores
from bitlatent.evaluation.codecs import rate_distortion
from bitlatent.evaluation.reconstruction import reconstruction_scores
from bitlatent.text.encoder import load_text_encoder
from bitlatent.text.feature_cache import TextFeatureCache
from bitlatent.text.model import TextToLatent
from bitlatent.text.train import AlignmentData

SPLIT = "test"
REJECTED_FIELDS = ("ordinal", "image_path", "caption", "reasons", "detail")


class NothingToEvaluate(ValueError):
    """No row of the set was accepted; ``dataset`` says what was read and why each row was rejected."""

    def __init__(self, message: str, dataset: dict[str, Any]):
        super().__init__(message)
        self.dataset = dataset


def dataset_summary(data_format: str, path: str, result: IngestResult) -> dict[str, Any]:
    """What was read: row counts, reasons, rows per image root, and every rejected row
    (``REJECTED_FIELDS``), JSON-serialisable."""
    rejected = result.rejected.astype(object).where(pd.notna(result.rejected), None)
    return {"format": data_format, "path": str(path),
            **{k: result.report[k] for k in ("input_rows", "accepted_rows", "rejected_rows", "reasons", "image_roots")},
            "rejected": [{k: (int(r[k]) if k == "ordinal" else r[k]) for k in REJECTED_FIELDS}
                         for r in rejected.to_dict("records")]}


def evaluate_external(
    data_format: str, path: str, decoder: BinaryLatentDecoder, text_model: TextToLatent | None,
    max_pairs: int | None = None, fit: ChosenFit | None = None, workdir: Path | None = None,
    codec_images: int = 300,
) -> dict[str, Any]:
    """Reconstruction (PSNR of the mean MSE, mean per-image PSNR, SSIM), JPEG/WebP at the same bits
    (on the first ``codec_images`` images, as the pipeline's ``evaluation.codec_images``) and
    alignment (Recall@1/5/10 over every caption, bit accuracy) on one dataset. ``fit``: the fitting
    settings (default: the decoder's recipe).

    Raises ``NothingToEvaluate`` when no row is accepted, ``FileNotFoundError`` / ``ValueError``
    when the source cannot be read at all (no such file, not of its format)."""
    spec = decoder.latent_spec
    fit = fit or choose_fit(decoder)
    with tempfile.TemporaryDirectory(prefix="bitlatent-eval-", dir=workdir) as scratch:
        scratch = Path(scratch)
        config = DataConfig(format=data_format, path=path, image_size=spec.image_size, max_pairs=max_pairs,
                            splits={SPLIT: 1.0}, max_reject_fraction=1.0, scratch_dir=str(scratch))
        result = ingest(config, scratch / "shards")
        dataset = dataset_summary(data_format, path, result)
        shards = ImageShards(scratch / "shards")
        table = images_table(result.pairs)
        bits, ids, originals = [], [], []
        for index in range(shards.num_shards(SPLIT)):
            images = shards.shard(SPLIT, index)  # uint8 (n, H, W, 3)
            fitted = fit_latents(decoder, images, fit.train)
            bits.append(fitted.packed)
            ids.append(shard_image_ids(table, SPLIT, index, len(images)))
            originals.append(np.asarray(images))
        if not bits:
            raise NothingToEvaluate(f"no valid image in {path}: all {dataset['input_rows']} rows rejected "
                                    f"({dataset['reasons']})", dataset)
        latents = LatentShard(np.concatenate(bits), np.concatenate(ids), spec)
        originals = np.concatenate(originals)
        reconstruction = reconstruction_scores(originals, decode_packed(decoder, latents.bits))
        metrics: dict[str, Any] = {
            "dataset": dataset,
            "fit_recipe": {"values": FitRecipe.from_train(fit.train).to_dict(), "sources": fit.sources,
                           "note": fit.note},
            "reconstruction": {SPLIT: reconstruction},
            "capacity": {"bits_per_image": spec.bits_per_image, "bits_per_pixel": spec.bits_per_pixel},
            "rate_distortion": rate_distortion(originals[:codec_images], reconstruction["psnr"], spec.bits_per_image),
        }
        if text_model is not None:
            cache = TextFeatureCache(scratch / "features", max_length=text_model.config.max_length)
            rows = result.pairs.sort_values("sample_id")
            data = AlignmentData.from_ids(cache.get(rows["caption"].tolist(), load_text_encoder()),
                                          rows["image_id"].tolist(), unpack_bits(latents.bits, spec),
                                          latents.image_ids)
            metrics["alignment"] = alignment_scores(text_model, data)
    return metrics
