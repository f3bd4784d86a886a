"""The cell prior in the ONNX bundle: ``prior.onnx`` + the text graph's ``prior_tokens``, its parity
check, and ``OnnxGenerator`` drawing latents from it (greedy = the torch prior's greedy draw, seeded
sampling, the prior's distribution)."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bitlatent.export import ExportConfig, export_bundle, text_model_parts
from bitlatent.export.onnx_export import PriorForExport
from bitlatent.export.parity import prior_parity
from bitlatent.inference import OnnxGenerator
from bitlatent.inference.prior import _draw, cell_bits
from bitlatent.text.prior import cell_bits as torch_cell_bits
from tests.export.test_decoder_graph import small_decoder

PROMPTS = ["a red circle at the top", "a blue square", "ünïcode 🎨 prompt with more words in it"]


def prior_head(decoder, seed: int = 0):
    from bitlatent.text.model import TextToLatent, TextToLatentConfig

    torch.manual_seed(seed)
    config = TextToLatentConfig.for_spec(decoder.latent_spec, width=32, heads=2, layers=1, text_layers=1, code_bits=16,
                                         image_code_hidden=32, max_length=16, prior_layers=1)  # fmt: skip
    head = TextToLatent(config).eval()
    with torch.no_grad():
        head.prior.head.bias.normal_(0.0, 2.0)  # peaked, unequal cell distributions
        head.prior.position.normal_(0.0, 1.0)  # that differ from cell to cell
    return head


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    decoder = small_decoder()
    head = prior_head(decoder)
    out = tmp_path_factory.mktemp("prior-bundle")
    manifest = export_bundle(decoder, text_model_parts(head), out, ExportConfig(fp16=False, int8=False, seed=0))
    return out, manifest, head


def test_the_bundle_carries_the_prior_and_its_parity_passed(bundle):
    out, manifest, head = bundle
    assert manifest["models"]["prior"]["file"] == "prior.onnx" and (out / "prior.onnx").is_file()
    assert [o["name"] for o in manifest["models"]["text_to_latent"]["outputs"]][-1] == "prior_tokens"
    assert [i["name"] for i in manifest["models"]["prior"]["inputs"]] == ["prior_tokens", "attention_mask", "cells"]
    prior = manifest["parity"]["prior"]
    assert prior["passed"] and prior["max_abs_logit"] <= 1e-3 and prior["argmax_agreement"] == 1.0
    assert manifest["parity"]["text_to_latent"]["max_abs_prior_tokens"] <= 1e-3
    assert manifest["text_model"]["prior_layers"] == 1


def test_prior_graph_is_causal_over_cells(bundle):
    out, _, head = bundle
    session = ort.InferenceSession(str(out / "prior.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    T, C = head.prior.config.num_cells, head.prior.config.bits_per_cell
    tokens = rng.standard_normal((1, 5, head.prior.config.width)).astype(np.float32)
    mask = np.ones((1, 5), np.int64)
    cells = rng.integers(0, 2, size=(1, T, C), dtype=np.uint8)
    (before,) = session.run(None, {"prior_tokens": tokens, "attention_mask": mask, "cells": cells})
    t = T // 2
    cells[0, t] ^= 1
    (after,) = session.run(None, {"prior_tokens": tokens, "attention_mask": mask, "cells": cells})
    np.testing.assert_array_equal(before[:, : t + 1], after[:, : t + 1])  # row t reads cells < t only
    assert np.abs(before[:, t + 1 :] - after[:, t + 1 :]).max() > 1e-4
    (prefix,) = session.run(None, {"prior_tokens": tokens, "attention_mask": mask, "cells": cells[:, : t + 1]})
    np.testing.assert_allclose(prefix, after[:, : t + 1], atol=1e-5)  # a prefix gives the same rows


def test_a_prior_that_differs_from_its_export_fails_parity(bundle):
    out, _, head = bundle
    changed = prior_head(small_decoder(), seed=1).prior
    result = prior_parity(PriorForExport(changed).eval(), out / "prior.onnx", 4, np.random.default_rng(0), 1e-3)
    assert not result.passed and ">" in result.message


def test_greedy_generate_is_the_torch_priors_greedy_draw(bundle):
    from bitlatent.text.encoder import load_text_encoder

    out, _, head = bundle
    generator = OnnxGenerator(out, device="cpu")
    assert generator.describe()["cell_prior"] and generator.default_temperature("generate") == 1.0
    assert generator.default_temperature("refine") == 0.0
    ours = generator.generate_bits(PROMPTS, temperature=0.0).bits
    encoder = load_text_encoder("cpu")
    ids, mask = encoder.tokenize(PROMPTS, 16)
    with torch.no_grad():
        states = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = head.prior.sample(states.float(), mask, temperature=0.0).numpy()
    np.testing.assert_array_equal(ours, ref)
    assert len({row.tobytes() for row in ours}) == len(PROMPTS), "the captions draw different latents"


def test_seeded_samples_follow_the_seed_and_ignore_other_prompts(bundle):
    out, _, _ = bundle
    generator = OnnxGenerator(out, device="cpu")
    a = generator.generate_bits(PROMPTS, samples=2, seed=5).bits  # default temperature: 1
    np.testing.assert_array_equal(a, generator.generate_bits(PROMPTS, samples=2, seed=5).bits)
    assert (a != generator.generate_bits(PROMPTS, samples=2, seed=6).bits).any()
    assert (a[0] != a[1]).any(), "two samples of one prompt differ"
    alone = generator.generate_bits(PROMPTS[1:2], samples=2, seed=5).bits
    np.testing.assert_array_equal(alone, a[2:4])
    chunked = OnnxGenerator(out, device="cpu", max_batch=2).generate_bits(PROMPTS, samples=2, seed=5).bits
    np.testing.assert_array_equal(chunked, a)
    images = generator.generate(PROMPTS, samples=2, seed=5)
    assert images.shape == (6, 16, 16, 3)


def test_first_cells_follow_the_priors_distribution(bundle):
    """Cell 0 depends only on the caption: over 400 samples its values' frequencies match softmax(logits)."""
    out, _, _ = bundle
    generator = OnnxGenerator(out, device="cpu")
    pred = generator.predict(PROMPTS[:1])
    assert pred.prior_tokens.dtype == np.float32
    session = generator.prior_session
    C = generator.latent_shape[0]
    cells = np.zeros((1, 1, C), np.uint8)
    (logits,) = session.run(None, {"prior_tokens": pred.prior_tokens, "attention_mask": pred.tokens.attention_mask,
                                   "cells": cells})  # fmt: skip
    p = np.exp(logits[0, 0] - logits[0, 0].max())
    p /= p.sum()
    bits = generator.generate_bits(PROMPTS[:1], samples=400, seed=0).bits  # (400, C, h, w)
    values = (bits[:, :, 0, 0].astype(int) * (2 ** np.arange(C - 1, -1, -1))).sum(1)
    freq = np.bincount(values, minlength=2**C) / 400
    assert np.abs(freq - p).max() < 0.08, (freq.round(3), p.round(3))


def test_cell_values_decode_like_the_torch_prior_and_draws_invert_the_cdf():
    values = np.arange(256)
    np.testing.assert_array_equal(cell_bits(values, 8), torch_cell_bits(torch.from_numpy(values), 8).numpy())
    logits = np.log(np.array([[0.1, 0.2, 0.7]] * 4))
    np.testing.assert_array_equal(_draw(logits, 1.0, np.array([0.05, 0.15, 0.5, 0.999])), [0, 1, 2, 2])
    np.testing.assert_array_equal(_draw(logits, 0.0, np.zeros(4)), [2, 2, 2, 2])
