"""bitlatent.codec.entropy_model with ``patch`` 2 (a token per 2x2 block of cells), end to end: trained,
saved and loaded, coding latents exactly through the codec, and exported to ONNX with its parity check
(``export.entropy_model``). The patch-1 model of the same tests is ``conftest.tiny_entropy``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import onnx
import pytest
import torch

from bitlatent.codec import compress_batch, decompress, decompress_batch, ideal_bits
from bitlatent.codec.entropy_model import EntropyModel, load_entropy_model, save_entropy_model, torch_logits
from bitlatent.codec.entropy_train import train_entropy_model
from bitlatent.codec.logits import ENTROPY_INPUTS, ENTROPY_OUTPUTS
from bitlatent.export.entropy_model import entropy_model_parity, export_entropy_model
from tests.codec.conftest import SHAPE, structured_data, tiny_model_config, tiny_train_config

PATCH = 2


@pytest.fixture(scope="module")
def trained() -> tuple[EntropyModel, np.ndarray]:
    """A patch-2 model trained as ``conftest.tiny_entropy`` is, and its 4 patterns."""
    patterns = np.random.default_rng(7).integers(0, 2, (4, *SHAPE), dtype=np.uint8)
    data, _ = structured_data(128, 0, patterns)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model = train_entropy_model(data, replace(tiny_model_config(), patch=PATCH), tiny_train_config()).model
    finally:
        torch.set_num_threads(threads)
    return model, patterns


def test_a_trained_patch_2_model_saves_loads_and_codes_held_out_latents_exactly_below_raw(trained, tmp_path):
    model, patterns = trained
    identity = save_entropy_model(model, tmp_path / "m")
    loaded, loaded_id = load_entropy_model(tmp_path / "m")
    assert loaded_id == identity and loaded.config.patch == PATCH and loaded.config.num_tokens == 4
    held_out, _ = structured_data(32, 1, patterns)
    bits = held_out.latent_bits
    states, mask = held_out.features.padded()
    raw = float(np.prod(SHAPE))
    plain = ideal_bits(bits, torch_logits(loaded)).mean()
    captioned = ideal_bits(bits, torch_logits(loaded, states, mask)).mean()
    assert plain < 0.6 * raw, plain  # 4 patterns with 3% noise
    assert captioned < 0.85 * plain, (captioned, plain)  # the caption names the pattern
    streams = compress_batch(bits, torch_logits(model, states, mask), 8, identity)  # coded by the trained model
    assert np.array_equal(decompress_batch(streams, torch_logits(loaded, states, mask), identity), bits)
    plain_streams = compress_batch(bits[:3], torch_logits(loaded), 8, identity)
    assert np.array_equal(decompress(plain_streams[1], torch_logits(model), identity), bits[1])


def test_a_patch_2_model_exports_to_onnx_and_passes_its_parity_check(trained, tmp_path):
    model, _ = trained
    path = export_entropy_model(model, tmp_path / "entropy_model.onnx")
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == ENTROPY_INPUTS and [o.name for o in graph.output] == ENTROPY_OUTPUTS
    result = entropy_model_parity(model, path, 4, np.random.default_rng(0), 1e-4)
    assert result.passed, result.message
    assert result.metrics["round_trip_exact"] and result.metrics["max_abs_logit"] <= 1e-4
    other = EntropyModel(model.config).eval()  # the same architecture, other weights: parity must fail
    assert not entropy_model_parity(other, path, 4, np.random.default_rng(0), 1e-4).passed
