"""OnnxGenerator on the tiny bundles: shapes, the three modes, prompt validation, PNG, the same
latents as the torch path for the same seed, and that the whole inference path runs without torch."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from bitlatent.generation import MODES
from bitlatent.inference import BundleError, OnnxGenerator, encode_png, generate_images
from tests.export.tiny import LIBRARY_SIZE, MAX_PROMPT_TOKENS, PROJECT

PROMPTS = ["a small red circle in the top left corner", "a blue square", "ünïcode 🎨 prompt"]


@pytest.fixture(scope="module")
def generator(tiny) -> OnnxGenerator:
    return OnnxGenerator(tiny.bundle, device="cpu")


def test_no_torch_and_no_transformers_on_the_inference_path(tiny):
    """A fresh interpreter: import, load, generate, PNG; torch must never be imported."""
    code = textwrap.dedent(f"""
        import sys
        import bitlatent.inference as inference
        g = inference.OnnxGenerator({str(tiny.bundle)!r}, device="cpu")
        images = g.generate(["a red circle", "a blue square"], "refine", samples=2, temperature=0.5)
        assert images.shape == (4, 16, 16, 3)
        inference.encode_png(images[0])
        import bitlatent.datasets.onnx_bundle, bitlatent.serving.cli
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "transformers", "kedro_datasets"))
        print("HEAVY", heavy)
        assert not heavy, heavy
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def test_generate_gives_uint8_images_prompt_major(generator):
    images = generator.generate(PROMPTS, samples=2, temperature=1.0, seed=1)
    assert images.shape == (6, 16, 16, 3) and images.dtype == np.uint8
    gen = generator.generate_bits(PROMPTS, samples=2, temperature=1.0, seed=1)
    assert list(gen.prompt_index) == [0, 0, 1, 1, 2, 2] and gen.library_index is None
    np.testing.assert_array_equal(generator.decode(gen.bits), images)


def test_argmax_is_deterministic_and_samples_follow_the_seed(generator):
    a = generator.generate_bits(PROMPTS, samples=3).bits
    assert (a[0::3] == a[1::3]).all()  # temperature 0: every sample is the argmax
    s1 = generator.generate_bits(PROMPTS, samples=2, temperature=1.0, seed=5).bits
    s2 = generator.generate_bits(PROMPTS, samples=2, temperature=1.0, seed=5).bits
    s3 = generator.generate_bits(PROMPTS, samples=2, temperature=1.0, seed=6).bits
    np.testing.assert_array_equal(s1, s2)
    assert (s1 != s3).any()
    alone = generator.generate_bits(PROMPTS[1:2], samples=2, temperature=1.0, seed=5).bits
    np.testing.assert_array_equal(alone, s1[2:4])  # a prompt's samples ignore the other prompts


def test_retrieve_returns_library_latents_and_refine_interpolates(generator, tiny):
    ret = generator.generate_bits(PROMPTS, "retrieve", samples=3)
    assert ret.library_index.shape == (9,) and len(set(ret.library_index[:3])) == 3
    np.testing.assert_array_equal(ret.bits, tiny.library_bits[ret.library_index])
    keep = generator.generate_bits(PROMPTS, "refine", samples=3, strength=0.0)
    np.testing.assert_array_equal(keep.bits, ret.bits)
    full = generator.generate_bits(PROMPTS, "refine", samples=3, strength=1.0)
    np.testing.assert_array_equal(full.bits, np.repeat(generator.generate_bits(PROMPTS).bits, 3, axis=0))
    half = generator.generate_bits(PROMPTS, "refine", samples=3, strength=0.5)
    d_ret, d_gen = (half.bits != ret.bits).sum(), (half.bits != full.bits).sum()
    assert d_ret > 0 and d_gen > 0
    assert generator.modes == ("generate", "retrieve", "refine") and generator.library is not None
    assert len(generator.library) == LIBRARY_SIZE


def test_onnx_generate_matches_the_torch_path(generator, tiny):
    """Same prompts through TextEncoder + TextToLatentPipeline (torch) and the bundle (ORT)."""
    from bitlatent.generation import code_signs, nearest
    from bitlatent.text.encoder import load_text_encoder
    from bitlatent.text.model import TextToLatentPipeline

    encoder = load_text_encoder("cpu")
    ids, mask = encoder.tokenize(PROMPTS, MAX_PROMPT_TOKENS)
    tokens = generator.tokenize(PROMPTS)
    np.testing.assert_array_equal(tokens.input_ids, ids.numpy())
    with torch.no_grad():
        logits, bits, codes = TextToLatentPipeline(encoder.model, tiny.head, return_code=True)(ids, mask)
    ours = generator.generate_bits(PROMPTS)
    assert (ours.bits == bits.numpy()).mean() >= 0.999
    pred = generator.predict(PROMPTS)
    np.testing.assert_array_equal(pred.code_bits, codes.numpy())
    # retrieve: the torch model's text codes against its image codes of the library
    from bitlatent.export.bundle import _image_codes

    library_codes = _image_codes(tiny.head, tiny.library_bits)
    rows = nearest(codes.numpy(), code_signs(library_codes), k=2).reshape(-1)
    np.testing.assert_array_equal(generator.generate_bits(PROMPTS, "retrieve", samples=2).library_index, rows)


@pytest.mark.parametrize("with_prior", [False, True], ids=["per-bit", "cell-prior"])
def test_the_same_seed_gives_the_same_latents_through_torch_and_onnx(tiny, tiny_prior, with_prior):
    """``bitlatent.text.generate`` (torch, ``generate --torch``) and ``OnnxGenerator`` on a bundle
    exported from the same model: every mode, greedy and sampled, the same bits row for row."""
    from bitlatent.text.encoder import load_text_encoder
    from bitlatent.text.generate import generate_latents

    export = tiny_prior if with_prior else tiny
    generator = OnnxGenerator(export.bundle, device="cpu")
    assert (generator.prior_session is not None) == with_prior and generator.modes == MODES
    encoder = load_text_encoder("cpu")
    for mode in MODES:
        for temperature in (0.0, 1.0):
            kw = dict(samples=2, temperature=temperature, seed=7, strength=0.5)
            onnx = generator.generate_bits(PROMPTS, mode, **kw)
            ours = generate_latents(PROMPTS, encoder, export.head, mode, library=export.library_bits, **kw)
            np.testing.assert_array_equal(ours.bits, onnx.bits, err_msg=f"{mode} at temperature {temperature}")
            np.testing.assert_array_equal(ours.prompt_index, onnx.prompt_index)
            if mode == "generate":
                assert ours.library_index is None and onnx.library_index is None
            else:
                np.testing.assert_array_equal(ours.library_index, onnx.library_index)
    sampled = generator.generate_bits(PROMPTS, "generate", samples=2, temperature=1.0, seed=7).bits
    assert (sampled != generator.generate_bits(PROMPTS, "generate", samples=2, temperature=0.0).bits).any()


def test_prompts_are_validated_and_long_ones_truncated_with_a_warning(generator):
    for bad in ("", "   \n\t", [], ["ok", " "]):
        with pytest.raises(ValueError, match="empty|no prompt"):
            generator.generate(bad)
    with pytest.raises(TypeError):
        generator.generate([b"bytes"])
    long = "a red circle " + "and a blue square " * 20
    with pytest.warns(UserWarning, match=f"longer than {MAX_PROMPT_TOKENS} tokens were truncated"):
        gen = generator.generate_bits([long, "short"])
    assert list(gen.truncated) == [True, False]
    tokens = generator.tokenize([long], warn=False)
    assert tokens.input_ids.shape == (1, MAX_PROMPT_TOKENS) and tokens.input_ids[0, -1] == 102  # [SEP] kept
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        generator.generate(["short"])  # no warning when nothing is cut


def test_bad_options_are_errors(generator):
    with pytest.raises(ValueError, match="unknown mode"):
        generator.generate(["x"], "dream")
    with pytest.raises(ValueError, match="temperature"):
        generator.generate(["x"], temperature=-1)
    with pytest.raises(ValueError, match="samples"):
        generator.generate(["x"], samples=0)
    with pytest.raises(ValueError, match="bits must be"):
        generator.decode(np.zeros((1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="device"):
        OnnxGenerator(generator.bundle_dir, device="tpu")


def test_big_inputs_are_split_into_chunks(tiny):
    small = OnnxGenerator(tiny.bundle, device="cpu", max_batch=2)
    big = OnnxGenerator(tiny.bundle, device="cpu")
    prompts = PROMPTS * 2
    np.testing.assert_array_equal(small.generate(prompts), big.generate(prompts))


def test_decoding_in_chunks_gives_the_same_images(tiny):
    bits = np.random.default_rng(0).integers(0, 2, size=(7, 4, 4, 4), dtype=np.uint8)
    one = OnnxGenerator(tiny.bundle, device="cpu", decode_batch=1, verify=False)
    whole = OnnxGenerator(tiny.bundle, device="cpu", verify=False)
    assert one.decode_batch == 1 and whole.decode_batch == 256  # 16x16x8 floats per image: far under 2 MB
    np.testing.assert_array_equal(one.decode(bits), whole.decode(bits))
    assert OnnxGenerator(tiny.bundle, device="cpu", max_batch=3, decode_batch=10, verify=False).decode_batch == 3
    with pytest.raises(ValueError, match="decode_batch"):
        OnnxGenerator(tiny.bundle, device="cpu", decode_batch=0, verify=False)


def test_cpu_decode_batch_keeps_the_largest_activation_near_l2_size():
    from bitlatent.inference import cpu_decode_batch

    default = {"image_size": 64, "decoder": {"config": {"image_size": 64, "widths": [128, 64, 32]}}}
    assert cpu_decode_batch(default, 256) == 4  # 32 x 64 x 64 x 4 bytes = 512 KB per image
    assert cpu_decode_batch(default, 2) == 2
    big = {"image_size": 256, "decoder": {"config": {"image_size": 256, "widths": [256, 128, 64, 64, 64]}}}
    assert cpu_decode_batch(big, 256) == 1
    assert cpu_decode_batch({"image_size": 32}, 256) == 16  # no decoder config: widths ending in 32 assumed


def test_session_options_are_the_measured_ones():
    import onnxruntime as ort

    from bitlatent.inference import session_options

    options = session_options(threads=1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert options.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert options.intra_op_num_threads == 1 and options.enable_mem_pattern and options.enable_cpu_mem_arena
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert session_options(threads=2, spinning=True).get_session_config_entry("session.intra_op.allow_spinning") == "1"


def test_a_tampered_bundle_is_refused(tiny, tmp_path):
    import shutil

    copy = tmp_path / "bundle"
    shutil.copytree(tiny.bundle, copy)
    with open(copy / "text_to_latent.onnx", "r+b") as f:
        f.seek(1000)
        f.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="sha256"):
        OnnxGenerator(copy)


def test_cpu_runs_fp32_unless_asked_for_the_int8_decoder(tiny):
    auto = OnnxGenerator(tiny.bundle, device="cpu", verify=False)
    assert auto.precision == "fp32"
    assert auto.describe()["models"] == {"decoder": "decoder.onnx", "text_to_latent": "text_to_latent.onnx"}
    int8 = OnnxGenerator(tiny.bundle, device="cpu", precision="int8", verify=False)
    assert int8.describe()["models"] == {"decoder": "decoder.int8.onnx", "text_to_latent": "text_to_latent.onnx"}
    half = OnnxGenerator(tiny.bundle, device="cpu", precision="fp16", verify=False)
    assert half.describe()["models"] == {"decoder": "decoder.fp16.onnx", "text_to_latent": "text_to_latent.fp16.onnx"}
    bits = np.random.default_rng(3).integers(0, 2, size=(32, 4, 4, 4), dtype=np.uint8)
    quantised, full = int8.decode(bits).astype(int), auto.decode(bits).astype(int)
    assert (quantised != full).any(), "a different graph"
    assert np.abs(quantised - full).mean() < 3.0  # within a few grey levels on average
    np.testing.assert_array_equal(int8.generate_bits(PROMPTS).bits, auto.generate_bits(PROMPTS).bits)


def test_a_bundle_without_an_int8_decoder_says_so_when_asked(tiny, tmp_path):
    import json
    import shutil

    from bitlatent.inference.generator import _precision

    copy = tmp_path / "bundle"
    shutil.copytree(tiny.bundle, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    del manifest["models"]["decoder_int8"], manifest["files"]["decoder.int8.onnx"]
    (copy / "decoder.int8.onnx").unlink()
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="no int8 decoder"):
        OnnxGenerator(copy, device="cpu", precision="int8")
    with pytest.raises(ValueError, match="for the CPU provider"):
        _precision("int8", {"decoder_int8"}, use_cuda=True, bundle_dir=copy)
    assert _precision("auto", {"decoder_int8", "decoder_fp16", "text_to_latent_fp16"}, True, copy) == "fp16"
    assert _precision("auto", {"decoder_int8", "decoder_fp16", "text_to_latent_fp16"}, False, copy) == "fp32"
    with pytest.raises(ValueError, match="precision must be one of"):
        OnnxGenerator(copy, device="cpu", precision="int4")


def test_png_round_trip_and_generate_images(generator, tiny, tmp_path):
    image = generator.generate(["a red circle"])[0]
    png = encode_png(image)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    with pytest.raises(ValueError, match="uint8"):
        encode_png(image.astype(np.float32))
    paths = generate_images(tiny.bundle, ["a red circle", "a blue square"], tmp_path / "out", samples=2,
                            temperature=0.5, device="cpu")  # fmt: skip
    assert [p.name for p in paths] == ["000_00.png", "000_01.png", "001_00.png", "001_01.png"]
    assert all(np.asarray(Image.open(p)).shape == (16, 16, 3) for p in paths)
