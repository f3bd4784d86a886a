"""Text-to-image alignment on a held-out set: what the ``evaluation`` pipeline reports for the test
split and ``bitlatent evaluate`` reports for an external set, under the same names."""

from __future__ import annotations

from typing import Any

from bitlatent.text.model import TextToLatent
from bitlatent.text.train import AlignmentData, evaluate_alignment


def alignment_scores(model: TextToLatent, data: AlignmentData) -> dict[str, Any]:
    """Text->image Recall@1/5/10 and median rank of every caption among the set's images (Hamming
    distance in the shared code space), bit accuracy of the predicted latents, the counts, and the recall@10 of
    a random ranking."""
    scores = evaluate_alignment(model, data)
    return {**{k: v for k, v in scores.items() if k.startswith("t2i_")},
            "bit_accuracy": scores["bit_accuracy"], "test_captions": len(data),
            "test_images": int(len(data.latent_bits)), "random_recall@10": min(1.0, 10 / len(data.latent_bits))}
