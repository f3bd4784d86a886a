"""Deterministic splits by image id: every caption of an image lands in the same split."""

from __future__ import annotations

import hashlib

SPLITS = ("pretrain", "adapt", "test")


def unit_hash(key: str, seed: int = 0) -> float:
    """A stable number in [0, 1) for ``key`` (same on every machine and Python version)."""
    digest = hashlib.blake2b(f"{seed}:{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def assign_split(image_id: str, fractions: dict[str, float], seed: int = 0) -> str:
    """The split of ``image_id``, drawn from ``fractions`` (which sum to 1) by its hash."""
    point, cumulative = unit_hash(image_id, seed), 0.0
    for name, fraction in fractions.items():
        cumulative += fraction
        if point < cumulative:
            return name
    return next(reversed(fractions))


def check_fractions(fractions: dict[str, float]) -> dict[str, float]:
    """Validate split fractions: known names, non-negative, summing to 1."""
    unknown = set(fractions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected among {SPLITS}")
    if any(f < 0 for f in fractions.values()) or abs(sum(fractions.values()) - 1.0) > 1e-6:
        raise ValueError(f"split fractions must be >= 0 and sum to 1, got {fractions}")
    return {name: float(fractions[name]) for name in SPLITS if name in fractions}
