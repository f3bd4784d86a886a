"""The cell prior in the ONNX bundle: ``prior_context.onnx`` + ``prior.onnx`` + the text graph's
``prior_tokens``, its parity check, and ``OnnxGenerator`` drawing latents from it (greedy = the torch
prior's greedy draw, seeded sampling, the prior's distribution)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest
import torch

from bitlatent.export.parity import prior_parity
from bitlatent.generation import cell_uniforms, prompt_keys
from bitlatent.inference import OnnxGenerator, read_manifest
from bitlatent.inference.bundle import BundleError
from bitlatent.inference.onnx_prior import PriorSession, sample_prior_cells
from tests.export.test_decoder_graph import small_decoder
from tests.export.tiny import prior_head, tiny_prior_export

PROMPTS = ["a red circle at the top", "a blue square", "ünïcode 🎨 prompt with more words in it"]


@pytest.fixture(scope="module")
def tiny_prior(tmp_path_factory):
    return tiny_prior_export(tmp_path_factory)


@pytest.fixture(scope="module")
def bundle(tiny_prior):
    return tiny_prior.bundle, read_manifest(tiny_prior.bundle), tiny_prior.head


def test_the_bundle_carries_the_prior_and_its_parity_passed(bundle):
    out, manifest, head = bundle
    assert manifest["version"] == 2
    assert manifest["models"]["prior"]["file"] == "prior.onnx" and (out / "prior.onnx").is_file()
    assert manifest["models"]["prior_context"]["file"] == "prior_context.onnx" and (out / "prior_context.onnx").is_file()
    assert [o["name"] for o in manifest["models"]["text_to_latent"]["outputs"]][-1] == "prior_tokens"
    context_io, step_io = manifest["models"]["prior_context"], manifest["models"]["prior"]
    assert [i["name"] for i in context_io["inputs"]] == ["prior_tokens", "attention_mask", "uncaptioned"]
    assert [i["name"] for i in step_io["inputs"]][:2] == ["previous_cell", "step"]
    context_outputs = [o["name"] for o in context_io["outputs"]]
    assert [i["name"] for i in step_io["inputs"]][-len(context_outputs):] == context_outputs  # fed by name
    assert all(io["doc"] for io in context_io["outputs"] + step_io["inputs"] + step_io["outputs"])
    prior = manifest["parity"]["prior"]
    assert prior["passed"] and prior["max_abs_logit"] <= 1e-3 and prior["argmax_agreement"] == 1.0
    assert manifest["parity"]["text_to_latent"]["max_abs_prior_tokens"] <= 1e-3
    assert manifest["text_model"]["prior_layers"] == 1


def test_prior_graph_steps_give_the_teacher_forced_logits(bundle):
    """prior_context.onnx once, then prior.onnx called once per cell on its own caches (plain
    ``run`` calls, fed by name) gives row t of torch's ``cell_logits``."""
    out, _, head = bundle
    context_session, session = (ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
                                for name in ("prior_context.onnx", "prior.onnx"))  # fmt: skip
    rng = np.random.default_rng(0)
    prior = head.prior
    T, C = prior.config.num_cells, prior.config.bits_per_cell
    tokens = rng.standard_normal((2, 5, prior.config.width)).astype(np.float32)
    mask = np.array([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0]], np.int64)
    cells = rng.integers(0, 2, size=(2, T, C), dtype=np.uint8)
    with torch.no_grad():
        whole = prior.cell_logits(torch.from_numpy(tokens), torch.from_numpy(mask), torch.from_numpy(cells)).numpy()
    assert [i.name for i in session.get_inputs()] == ["previous_cell", "step", "keys_0", "values_0", "context_keys_0",
                                                      "context_values_0", "context_bias"]  # fmt: skip
    uncaptioned = np.array([False, True])  # row 1 reads the "no caption" token
    with torch.no_grad():
        null_tokens, null_mask = prior.without_caption(torch.from_numpy(tokens), torch.from_numpy(mask))
        whole[1] = prior.cell_logits(null_tokens, null_mask, torch.from_numpy(cells)).numpy()[1]
    names = [o.name for o in context_session.get_outputs()]
    context = dict(zip(names, context_session.run(names, {"prior_tokens": tokens, "attention_mask": mask,
                                                          "uncaptioned": uncaptioned})))  # fmt: skip
    keys, values = (c[0].numpy() for c in prior.empty_cache(2))  # one block
    for t in range(T):
        logits, keys[:, :, t : t + 1], values[:, :, t : t + 1] = session.run(None, {
            "previous_cell": np.ascontiguousarray(cells[:, t - 1]), "step": np.array([t]), "keys_0": keys,
            "values_0": values, **context})  # fmt: skip
        np.testing.assert_allclose(logits, whole[:, t], atol=1e-4)


def test_a_prior_that_differs_from_its_export_fails_parity(bundle):
    out, _, head = bundle
    changed = prior_head(small_decoder(), seed=1).prior
    result = prior_parity(changed.eval(), out / "prior_context.onnx", out / "prior.onnx", 4, np.random.default_rng(0), 1e-3)
    assert not result.passed and ">" in result.message
    assert prior_parity(head.prior.eval(), out / "prior_context.onnx", out / "prior.onnx", 4, np.random.default_rng(0), 1e-3).passed


def test_a_version_1_bundle_with_a_prior_is_refused_with_the_command_that_rebuilds_it(bundle, tmp_path):
    """Version 1 had no prior_context.onnx (its prior.onnx read the caption at every cell)."""
    out, _, _ = bundle
    old = shutil.copytree(out, tmp_path / "bundle")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["version"] = 1
    del manifest["models"]["prior_context"], manifest["files"]["prior_context.onnx"]
    (old / "prior_context.onnx").unlink()
    (old / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="version-1 cell prior.*export the bundle again with `kedro run --pipelines export`"):
        OnnxGenerator(old, device="cpu")


def test_greedy_generate_is_the_torch_priors_greedy_draw(bundle):
    from bitlatent.text.encoder import load_text_encoder

    out, _, head = bundle
    generator = OnnxGenerator(out, device="cpu")
    assert generator.describe()["cell_prior"] and generator.default_temperature("generate") == 1.0
    assert generator.default_temperature("refine") == 1.0 and generator.default_temperature("retrieve") == 0.0
    ours = generator.generate_bits(PROMPTS, temperature=0.0).bits
    encoder = load_text_encoder("cpu")
    ids, mask = encoder.tokenize(PROMPTS, 16)
    with torch.no_grad():
        states = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state
        ref = head.prior.sample(states.float(), mask, temperature=0.0, guidance=2.0).numpy()  # the model's default
        plain = head.prior.sample(states.float(), mask, temperature=0.0).numpy()
    np.testing.assert_array_equal(ours, ref)
    np.testing.assert_array_equal(generator.generate_bits(PROMPTS, temperature=0.0, guidance=1.0).bits, plain)
    assert (ref != plain).any(), "guidance changes the draws"
    assert len({row.tobytes() for row in plain}) == len(PROMPTS), "the captions draw different latents"
    unconditional = generator.generate_bits(PROMPTS, temperature=0.0, guidance=0.0).bits
    assert all((row == unconditional[0]).all() for row in unconditional), "guidance 0: no caption at all"


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
    C = generator.latent_shape[0]
    prior = PriorSession(generator.prior_context_session, generator.prior_session, pred.prior_tokens,
                         pred.tokens.attention_mask)  # fmt: skip
    logits = prior.step(0, np.zeros((1, C), np.uint8))
    p = np.exp(logits[0] - logits[0].max())
    p /= p.sum()
    bits = generator.generate_bits(PROMPTS[:1], samples=400, seed=0, guidance=1.0).bits  # (400, C, h, w)
    values = (bits[:, :, 0, 0].astype(int) * (2 ** np.arange(C - 1, -1, -1))).sum(1)
    freq = np.bincount(values, minlength=2**C) / 400
    assert np.abs(freq - p).max() < 0.08, (freq.round(3), p.round(3))


def test_the_server_draws_from_the_prior_in_generate_mode(bundle):
    """A real server on loopback (spinning threads on): generate mode with no temperature draws
    from the prior at temperature 1, the same latents as ``OnnxGenerator``."""
    httpclient = pytest.importorskip("tritonclient.http")
    from bitlatent.serving.app import start_server_thread

    out, _, _ = bundle
    expected = OnnxGenerator(out, device="cpu").generate(PROMPTS[:2], seed=3)
    greedy = OnnxGenerator(out, device="cpu").generate(PROMPTS[:2], temperature=0.0)
    assert (expected != greedy).any()
    with start_server_thread(out, port=0, device="cpu", threads=1, spinning=True) as srv:
        client = httpclient.InferenceServerClient(srv.url)
        try:
            prompt = httpclient.InferInput("prompt", [2], "BYTES")
            prompt.set_data_from_numpy(np.array([p.encode() for p in PROMPTS[:2]], dtype=object))
            result = client.infer("bitlatent", [prompt], parameters={"mode": "generate", "seed": 3})
            np.testing.assert_array_equal(result.as_numpy("image"), expected)
        finally:
            client.close()


def test_prompt_keys_decorrelate_the_draws_of_different_prompts(bundle):
    out, _, _ = bundle
    generator = OnnxGenerator(out, device="cpu")
    pred = generator.predict([PROMPTS[0], PROMPTS[0]])
    tokens, mask = pred.prior_tokens, pred.tokens.attention_mask
    keys = prompt_keys(pred.tokens.input_ids, mask)
    assert keys[0] == keys[1]
    shape = generator.latent_shape
    steps = shape[1] * shape[2]
    sessions = (generator.prior_context_session, generator.prior_session)
    same = sample_prior_cells(*sessions, tokens, mask, shape, 1.0, cell_uniforms(0, 1, keys, steps))
    np.testing.assert_array_equal(same[0], same[1])  # one caption, one key: the same draw
    apart = sample_prior_cells(*sessions, tokens, mask, shape, 1.0, cell_uniforms(0, 1, np.array([1, 2], np.uint32), steps))
    assert (apart[0] != apart[1]).any()  # same caption, different keys: independent draws
    other = generator.tokenize(PROMPTS[1:2])
    assert prompt_keys(other.input_ids, other.attention_mask)[0] != keys[0]


def test_refine_is_the_torch_priors_refine_and_keeps_its_endpoints(bundle):
    from bitlatent.text.encoder import load_text_encoder

    out, _, head = bundle
    generator = OnnxGenerator(out, device="cpu")
    pred = generator.predict(PROMPTS)
    start = np.random.default_rng(3).integers(0, 2, (len(PROMPTS), *generator.latent_shape), dtype=np.uint8)
    ours = generator._sample_prior(pred, 0.0, 0, 1, 2.0, start, 0.5)  # greedy: the same draws as torch's
    encoder = load_text_encoder("cpu")
    ids, mask = encoder.tokenize(PROMPTS, 16)
    with torch.no_grad():
        states = encoder.model(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        ref = head.prior.refine(states, mask, torch.from_numpy(start), 0.5, temperature=0.0, guidance=2.0).numpy()
    np.testing.assert_array_equal(ours, ref)
    assert (ours != start).any() and (ours == start).all(1).mean() >= 0.5, "half the cells kept, others drawn again"
    np.testing.assert_array_equal(generator._sample_prior(pred, 1.0, 4, 1, 2.0, start, 0.0), start)
    np.testing.assert_array_equal(generator._sample_prior(pred, 1.0, 4, 1, 2.0, start, 1.0),
                                  generator._sample_prior(pred, 1.0, 4, 1, 2.0))  # strength 1: generate's draws


def test_refine_through_the_generator_uses_the_prior_and_the_library(tiny_prior):
    generator = OnnxGenerator(tiny_prior.bundle, device="cpu")
    retrieved = generator.generate_bits(PROMPTS, "retrieve", samples=2)
    kept = generator.generate_bits(PROMPTS, "refine", samples=2, strength=0.0)
    np.testing.assert_array_equal(kept.bits, retrieved.bits)
    drawn = generator.generate_bits(PROMPTS, "refine", samples=2, strength=1.0, seed=7)
    np.testing.assert_array_equal(drawn.bits, generator.generate_bits(PROMPTS, "generate", samples=2, seed=7).bits)
    half = generator.generate_bits(PROMPTS, "refine", samples=2, strength=0.5, seed=7)
    np.testing.assert_array_equal(half.library_index, retrieved.library_index)
    assert (half.bits != retrieved.bits).any()


def test_the_bundle_carries_the_entropy_model_and_decodes_its_streams(tiny_prior):
    """The compression pipeline's entropy model travels in the bundle: its graph is in the manifest with
    its parity, and streams coded with it decode exactly through the bundle's own graph."""
    from bitlatent.codec import compress_batch, decompress_batch
    from bitlatent.codec.logits import ENTROPY_FILE, onnx_logits, onnx_model_id

    manifest = read_manifest(tiny_prior.bundle)
    assert manifest["models"]["entropy_model"]["file"] == ENTROPY_FILE
    assert manifest["parity"]["entropy_model"]["passed"] and manifest["entropy_model"]["latent_h"] == tiny_prior.decoder.latent_spec.h
    session = ort.InferenceSession(str(tiny_prior.bundle / ENTROPY_FILE), providers=["CPUExecutionProvider"])
    model_id = onnx_model_id(tiny_prior.bundle / ENTROPY_FILE)
    streams = compress_batch(tiny_prior.library_bits[:4], onnx_logits(session), 8, model_id)
    np.testing.assert_array_equal(decompress_batch(streams, onnx_logits(session), model_id), tiny_prior.library_bits[:4])


def test_a_prior_drawing_blocks_of_cells_exports_and_draws_as_torch_does(tmp_path):
    """patch 2: prior.onnx takes a block's four cells and gives their logits; the numpy sampler draws,
    refines and orders them into the grid as ``CellPrior`` does."""
    from bitlatent.export.onnx_export import export_prior, export_prior_context
    from bitlatent.text.prior import CellPrior, CellPriorConfig

    torch.manual_seed(0)
    prior = CellPrior(CellPriorConfig(latent_h=4, latent_w=6, bits_per_cell=3, width=32, heads=2, layers=2,
                                      dropout=0.0, caption_dropout=0.2, patch=2)).eval()  # fmt: skip
    context_path, step_path = export_prior_context(prior, tmp_path / "prior_context.onnx"), export_prior(prior, tmp_path / "prior.onnx")
    assert prior_parity(prior, context_path, step_path, 3, np.random.default_rng(0), 1e-3).passed
    sessions = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]) for p in (context_path, step_path)]
    rng = np.random.default_rng(1)
    tokens = rng.standard_normal((3, 5, 32)).astype(np.float32)
    mask = np.array([[1] * 5, [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], np.int64)
    u = cell_uniforms(4, 2, np.arange(3), 24)  # (6, 24)
    ours = sample_prior_cells(*sessions, tokens, mask, (3, 4, 6), 1.0, u, samples=2, guidance=2.0)
    states = torch.from_numpy(np.repeat(tokens, 2, 0))
    with torch.no_grad():  # the torch prior reads projected tokens: feed ONNX's prior_tokens through an identity
        prior.token_norm, prior.token_proj = torch.nn.Identity(), torch.nn.Identity()
        ref = prior.sample(states, torch.from_numpy(np.repeat(mask, 2, 0)), 1.0, u, 2.0).numpy()
        start = 1 - ref
        refined = prior.refine(states, torch.from_numpy(np.repeat(mask, 2, 0)), torch.from_numpy(start), 0.5, 1.0, u, 2.0).numpy()
    np.testing.assert_array_equal(ours, ref)
    assert (ours[0] != ours[1]).any()
    np.testing.assert_array_equal(sample_prior_cells(*sessions, tokens, mask, (3, 4, 6), 1.0, u, 2, 2.0, start, 0.5), refined)
