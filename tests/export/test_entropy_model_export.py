"""bitlatent.export.entropy_model: the entropy model as ONNX, its parity check, and streams coded and
decoded with onnxruntime and numpy alone (``codec.logits.onnx_logits``)."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from bitlatent.codec import CodecError, compress_batch, decompress_batch
from bitlatent.codec.entropy_model import torch_logits
from bitlatent.codec.logits import ENTROPY_INPUTS, ENTROPY_OUTPUTS, onnx_logits, onnx_model_id
from bitlatent.export.entropy_model import entropy_model_parity, export_entropy_model
from bitlatent.export.parity import _session
from tests.codec.conftest import structured_data, tiny_entropy  # noqa: F401 - the session fixture


@pytest.fixture(scope="module")
def exported(tiny_entropy, tmp_path_factory):  # noqa: F811
    return export_entropy_model(tiny_entropy.model, tmp_path_factory.mktemp("onnx") / "entropy_model.onnx")


def test_the_graph_has_the_documented_inputs_and_passes_parity(tiny_entropy, exported):  # noqa: F811
    graph = onnx.load(str(exported)).graph
    assert [i.name for i in graph.input] == ENTROPY_INPUTS and [o.name for o in graph.output] == ENTROPY_OUTPUTS
    result = entropy_model_parity(tiny_entropy.model, exported, 4, np.random.default_rng(0), 1e-4)
    assert result.passed, result.message
    assert result.metrics["round_trip_exact"] and result.metrics["max_abs_logit"] <= 1e-4


def test_parity_fails_for_a_graph_of_another_model(tiny_entropy, exported, tmp_path):  # noqa: F811
    from bitlatent.codec.entropy_model import EntropyModel

    other = export_entropy_model(EntropyModel(tiny_entropy.model.config).eval(), tmp_path / "other.onnx")
    result = entropy_model_parity(tiny_entropy.model, other, 4, np.random.default_rng(0), 1e-4)
    assert not result.passed and result.metrics["max_abs_logit"] > 1e-4


def test_onnx_streams_decode_without_torch_given_captions_and_are_not_torch_streams(tiny_entropy, exported):  # noqa: F811
    data, _ = structured_data(16, 3, tiny_entropy.patterns)
    states, mask = (a.numpy() for a in data.features.padded())
    session = _session(exported)
    identity = onnx_model_id(exported)
    for s, m in ((None, None), (states, mask)):
        streams = compress_batch(data.latent_bits, onnx_logits(session, s, m), 8, identity)
        assert np.array_equal(decompress_batch(streams, onnx_logits(session, s, m), identity), data.latent_bits)
    torch_streams = compress_batch(data.latent_bits, torch_logits(tiny_entropy.model), 8, "000000aa")
    with pytest.raises(CodecError, match="encoded for model 000000aa"):
        decompress_batch(torch_streams, onnx_logits(session), identity)
