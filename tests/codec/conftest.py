"""A tiny entropy model trained once per session on structured latents, for the codec, export and CLI tests."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest
import torch

from bitlatent.codec.entropy_model import EntropyModel, EntropyModelConfig
from bitlatent.codec.entropy_train import EntropyTrainConfig, train_entropy_model
from bitlatent.text.encoder import TextFeatures
from bitlatent.text.train import AlignmentData

SHAPE = (4, 4, 4)  # (C, h, w): the latent of tests/test_cli.py's tiny decoder
TEXT_DIM = 8


@dataclass
class TinyEntropy:
    model: EntropyModel
    data: AlignmentData  # its training set: latents near 4 patterns, each caption naming its pattern
    patterns: np.ndarray  # uint8 (4, C, h, w)
    kind: np.ndarray  # int64 (n,): the pattern of each latent


def structured_data(n: int, seed: int, patterns: np.ndarray) -> tuple[AlignmentData, np.ndarray]:
    """``n`` latents, each one of ``patterns`` with 3% of its bits flipped, and one caption each: two
    tokens whose states say which pattern (plus noise), so a caption tells the model a lot."""
    rng = np.random.default_rng(seed)
    kind = rng.integers(0, len(patterns), n)
    bits = (patterns[kind] ^ (rng.random((n, *SHAPE)) < 0.03)).astype(np.uint8)
    tokens = rng.standard_normal((2 * n, TEXT_DIM)) * 0.1
    tokens[np.arange(0, 2 * n, 2), kind] += 1.0
    features = TextFeatures(tokens.astype(np.float16), np.arange(0, 2 * n + 1, 2), np.zeros((n, TEXT_DIM), np.float16))
    return AlignmentData(features, bits, np.arange(n)), kind


def tiny_model_config() -> EntropyModelConfig:
    return EntropyModelConfig(latent_h=SHAPE[1], latent_w=SHAPE[2], bits_per_cell=SHAPE[0], text_dim=TEXT_DIM,
                              width=32, heads=2, layers=1, mlp_ratio=2, dropout=0.0, caption_dropout=0.3)


def tiny_train_config(**changes) -> EntropyTrainConfig:
    return EntropyTrainConfig(**{"steps": 400, "batch_size": 32, "lr": 1e-2, "warmup_steps": 10, "progress": False,
                                 **changes})


@pytest.fixture(scope="session")
def tiny_entropy() -> TinyEntropy:
    patterns = np.random.default_rng(7).integers(0, 2, (4, *SHAPE), dtype=np.uint8)
    data, kind = structured_data(128, 0, patterns)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a model this small runs slower on more threads (5 s here, 27 s on 2 busy cores)
    try:
        model = train_entropy_model(data, tiny_model_config(), tiny_train_config()).model
    finally:
        torch.set_num_threads(threads)
    return TinyEntropy(model, data, patterns, kind)
