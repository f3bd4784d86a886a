"""Alignment metrics: text -> image Recall@k (by ``generation.hamming_distances``), bit accuracy.

Codes and latents are bits in {0, 1}: uint8 / bool arrays (n, K) or (n, C, h, w) (flattened).

Recall@k counts a caption as found when its own image (by image id; several captions may share
one image) is among the k nearest library images by Hamming distance. Hamming distances are
integers, so ties are common; they are resolved by the **expected** value under a random order
of the tied images: with ``a`` images strictly closer than the true one and ``t`` others at the
same distance, the hit counts ``clip((k - a) / (t + 1), 0, 1)``. So ties neither help nor hurt,
and an uninformative code (all distances equal) scores exactly chance, ``k / M``. The median rank
takes a caption's rank as the expected one under the same random order: ``a + 1 + t / 2``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from bitlatent.generation import hamming_distances

__all__ = ["recall_at_k", "bit_accuracy", "majority_bit_accuracy"]


def recall_at_k(
    query_codes: np.ndarray,
    query_image_ids: Sequence[str] | np.ndarray,
    library_codes: np.ndarray,
    library_image_ids: Sequence[str] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    chunk: int = 4096,
) -> dict[str, float]:
    """Text -> image Recall@k by Hamming distance: ``{"t2i_recall@1": ..., "t2i_recall@5": ...,
    "t2i_median_rank": ...}`` (rank 1: the caption's own image first).

    ``query_codes`` (n, K) are the captions' codes, ``query_image_ids`` (n,) the image each one
    describes; ``library_codes`` (M, K) and ``library_image_ids`` (M,) the searchable images
    (ids unique, and every query's image among them). Ties count by their expected value.
    """
    lib_ids = [str(x) for x in library_image_ids]
    column = {image_id: j for j, image_id in enumerate(lib_ids)}
    if len(column) != len(lib_ids):
        raise ValueError("library_image_ids must be unique")
    try:
        truth = np.array([column[str(x)] for x in query_image_ids], dtype=np.int64)  # (n,)
    except KeyError as e:
        raise ValueError(f"query image id {e.args[0]!r} is not in the library") from None
    if len(truth) != len(query_codes):
        raise ValueError("query_codes and query_image_ids differ in length")
    hits = {k: 0.0 for k in ks}
    ranks = []
    for lo in range(0, len(truth), chunk):
        d = hamming_distances(query_codes[lo : lo + chunk], library_codes)  # (c, M)
        t = truth[lo : lo + chunk]
        d_true = d[np.arange(len(t)), t][:, None]  # (c, 1)
        closer = (d < d_true).sum(1)  # (c,)
        tied = (d == d_true).sum(1) - 1  # (c,) other images at the same distance
        ranks.append(closer + 1 + tied / 2)
        for k in ks:
            hits[k] += float(np.clip((k - closer) / (tied + 1), 0.0, 1.0).sum())
    n = max(len(truth), 1)
    median = float(np.median(np.concatenate(ranks))) if ranks else float("nan")
    return {**{f"t2i_recall@{k}": hits[k] / n for k in ks}, "t2i_median_rank": median}


def bit_accuracy(pred_bits: np.ndarray, target_bits: np.ndarray) -> float:
    """Fraction of bits equal, over all samples and positions; shapes must match, e.g. (n, C, h, w)."""
    p, t = np.asarray(pred_bits), np.asarray(target_bits)
    if p.shape != t.shape:
        raise ValueError(f"shapes differ: {p.shape} vs {t.shape}")
    return float((p.astype(bool) == t.astype(bool)).mean()) if p.size else float("nan")


def majority_bit_accuracy(train_bits: np.ndarray, target_bits: np.ndarray | None = None) -> float:
    """Baseline: predict each bit position's most common value in ``train_bits`` (n, ...), scored
    on ``target_bits`` (default: ``train_bits``). What a text-blind model reaches."""
    train_bits = np.asarray(train_bits).astype(bool)
    target = train_bits if target_bits is None else np.asarray(target_bits).astype(bool)
    majority = train_bits.mean(0) >= 0.5  # (...)
    return float((target == majority[None]).mean())
