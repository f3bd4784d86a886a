"""The ``export`` pipeline end to end (Kedro runner, real catalog entries and parameters), the
bundle's manifest, and parity of the exported graphs with torch on fresh random inputs."""

from __future__ import annotations

import json
import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bitlatent.core.binary import bits_to_signs
from bitlatent.export import ParityError
from bitlatent.export.parity import ParityResult, decoder_parity, decoder_psnr_parity, random_token_batch
from bitlatent.inference.bundle import (
    BundleError,
    MANIFEST_FILE,
    commit_bundle,
    read_manifest,
    sha256_file,
)
from tests.export.tiny import LIBRARY_SIZE, MAX_PROMPT_TOKENS

EXPECTED_FILES = {"decoder.onnx", "decoder.fp16.onnx", "decoder.int8.onnx", "text_to_latent.onnx",
                  "text_to_latent.fp16.onnx", "entropy_model.onnx", "tokenizer.json", "library.npz"}  # fmt: skip


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


# ----------------------------------------------------------------------------- the pipeline's output


def test_the_pipeline_commits_a_complete_bundle_and_leaves_no_staging(tiny):
    files = {p.name for p in tiny.bundle.iterdir()}
    assert files == EXPECTED_FILES | {MANIFEST_FILE}
    assert not list((tiny.workdir / "scratch").iterdir()), "the staging folder was moved, not copied"
    assert not [p for p in tiny.bundle.parent.iterdir() if p.name.startswith(".")], "no .old / .staging leftovers"


def test_manifest_describes_every_file_with_its_sha256(tiny):
    manifest = read_manifest(tiny.bundle)
    assert set(manifest["files"]) == EXPECTED_FILES
    for name, info in manifest["files"].items():
        assert info["sha256"] == sha256_file(tiny.bundle / name)
        assert info["bytes"] == (tiny.bundle / name).stat().st_size
    assert manifest["latent_spec"] == tiny.decoder.latent_spec.to_dict()
    assert manifest["image_size"] == 16 and manifest["max_prompt_tokens"] == MAX_PROMPT_TOKENS
    assert manifest["opset"] == 18
    assert manifest["tokenizer"]["pad_id"] == 0 and manifest["tokenizer"]["sep_id"] == 102
    assert manifest["library"]["size"] == LIBRARY_SIZE and manifest["library"]["code_bits"] == 16
    assert all(r["passed"] for k, r in manifest["parity"].items() if k != "seed")


def test_manifest_io_matches_the_onnx_graphs(tiny):
    manifest = read_manifest(tiny.bundle)
    decoder, text = manifest["models"]["decoder"], manifest["models"]["text_to_latent"]
    assert decoder["inputs"] == [{"name": "bits", "dtype": "uint8", "shape": ["batch", 4, 4, 4], "doc": decoder["inputs"][0]["doc"]}]
    assert [(o["name"], o["dtype"], o["shape"]) for o in decoder["outputs"]] == [
        ("image", "uint8", ["batch", 16, 16, 3]), ("image_float", "float32", ["batch", 3, 16, 16])]
    assert [(i["name"], i["dtype"], i["shape"]) for i in text["inputs"]] == [
        ("input_ids", "int64", ["batch", "sequence"]), ("attention_mask", "int64", ["batch", "sequence"])]
    assert [(o["name"], o["dtype"], o["shape"]) for o in text["outputs"]] == [
        ("bit_logits", "float32", ["batch", 4, 4, 4]), ("bits", "uint8", ["batch", 4, 4, 4]), ("code_bits", "uint8", ["batch", 16])]
    for name, entry in manifest["models"].items():
        model = onnx.load(str(tiny.bundle / entry["file"]), load_external_data=False)
        assert [i.name for i in model.graph.input] == [i["name"] for i in entry["inputs"]], name
        assert [o.name for o in model.graph.output] == [o["name"] for o in entry["outputs"]], name
        assert model.opset_import[0].version == 18
        assert not any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer), "one file"


def test_fp16_variants_keep_inputs_and_outputs_and_hold_fp16_weights(tiny):
    manifest = read_manifest(tiny.bundle)
    for name in ("decoder", "text_to_latent"):
        full, half = manifest["models"][name], manifest["models"][name + "_fp16"]
        assert (full["inputs"], full["outputs"]) == (half["inputs"], half["outputs"])
        assert half["precision"] == "fp16"
        model = onnx.load(str(tiny.bundle / half["file"]))
        kinds = {t.data_type for t in model.graph.initializer if len(t.dims) >= 2}
        assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    assert (tiny.bundle / "text_to_latent.fp16.onnx").stat().st_size < 0.6 * (tiny.bundle / "text_to_latent.onnx").stat().st_size


def test_export_report_is_written(tiny):
    report = json.loads(tiny.report.read_text())
    assert report["library_size"] == LIBRARY_SIZE
    assert report["parity"]["decoder"]["max_abs_image"] <= 1e-4
    assert report["parity"]["text_to_latent"]["bit_agreement"] >= 0.999
    assert set(report["models"]) == {"decoder", "decoder_fp16", "decoder_int8", "text_to_latent", "text_to_latent_fp16",
                                     "entropy_model"}
    int8 = report["parity"]["decoder_int8"]
    assert int8["passed"] and int8["psnr_db"] >= int8["min_psnr_db"] == 35.0
    assert int8["calibration_source"] == "library" and int8["calibration_latents"] == LIBRARY_SIZE // 2


def test_int8_decoder_keeps_inputs_and_outputs_and_runs_on_integers(tiny):
    manifest = read_manifest(tiny.bundle)
    full, int8 = manifest["models"]["decoder"], manifest["models"]["decoder_int8"]
    assert (full["inputs"], full["outputs"]) == (int8["inputs"], int8["outputs"]) and int8["precision"] == "int8"
    model = onnx.load(str(tiny.bundle / int8["file"]))
    ops = [n.op_type for n in model.graph.node]
    convs = ops.count("Conv") + ops.count("ConvTranspose")
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8 and len(t.dims) == 4]
    assert len(int8_weights) == convs, "every convolution has int8 weights"
    assert ops.count("QuantizeLinear") >= convs and ops.count("DequantizeLinear") >= 2 * convs

# ----------------------------------------------------------------------------- parity on fresh inputs


@pytest.mark.parametrize("batch", [1, 5, 33])
def test_decoder_matches_torch_on_fresh_random_bits(tiny, batch):
    bits = np.random.default_rng(100 + batch).integers(0, 2, size=(batch, 4, 4, 4), dtype=np.uint8)
    image_u8, image = session(tiny.bundle / "decoder.onnx").run(["image", "image_float"], {"bits": bits})
    with torch.no_grad():
        ref = tiny.decoder(bits_to_signs(bits)).numpy()  # (B, 3, 16, 16)
    assert image.shape == ref.shape and np.abs(image - ref).max() <= 1e-4
    expected_u8 = np.round(ref * 255).clip(0, 255).transpose(0, 2, 3, 1)
    assert image_u8.dtype == np.uint8 and np.abs(image_u8.astype(int) - expected_u8).max() <= 1


@pytest.fixture(scope="module")
def encoder():
    from bitlatent.text.encoder import load_text_encoder

    return load_text_encoder("cpu")


@pytest.mark.parametrize(("batch", "length"), [(1, 3), (7, MAX_PROMPT_TOKENS), (3, 40)])
def test_text_model_matches_torch_on_fresh_random_tokens(tiny, encoder, batch, length):
    rng = np.random.default_rng(batch * 1000 + length)
    ids, mask = random_token_batch(rng, batch, length, 30522, 0, 101, 102)
    logits, bits, codes = session(tiny.bundle / "text_to_latent.onnx").run(None, {"input_ids": ids, "attention_mask": mask})
    with torch.no_grad():
        states = encoder.model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
        ref_logits, ref_codes = tiny.head(states.float(), torch.from_numpy(mask))
    assert (bits == (ref_logits >= 0).numpy()).mean() >= 0.999
    assert (codes == (ref_codes >= 0).numpy()).mean() >= 0.999
    assert np.abs(logits - ref_logits.numpy()).max() < 1e-3


def test_fp16_models_stay_close_to_fp32(tiny):
    bits = np.random.default_rng(7).integers(0, 2, size=(6, 4, 4, 4), dtype=np.uint8)
    full = session(tiny.bundle / "decoder.onnx").run(["image_float"], {"bits": bits})[0]
    half = session(tiny.bundle / "decoder.fp16.onnx").run(["image_float"], {"bits": bits})[0]
    assert half.dtype == np.float32 and np.abs(full - half).max() < 0.02


def test_int8_decoder_stays_close_to_torch_on_fresh_latents(tiny):
    from bitlatent.export.onnx_export import DecoderForExport

    bits = np.random.default_rng(8).integers(0, 2, size=(64, 4, 4, 4), dtype=np.uint8)
    wrapper = DecoderForExport(tiny.decoder).eval()
    close = decoder_psnr_parity(wrapper, tiny.bundle / "decoder.int8.onnx", bits, min_psnr=30.0)
    assert close.passed and 30.0 <= close.metrics["psnr_db"] < 80.0, close.message  # close, but not the fp32 graph
    exact = decoder_psnr_parity(wrapper, tiny.bundle / "decoder.onnx", bits, min_psnr=80.0)
    assert exact.passed, exact.message
    strict = decoder_psnr_parity(wrapper, tiny.bundle / "decoder.int8.onnx", bits, min_psnr=close.metrics["psnr_db"] + 1)
    assert not strict.passed and "<" in strict.message


def test_a_model_that_differs_from_its_export_fails_parity(tiny, tmp_path):
    from bitlatent.export.onnx_export import DecoderForExport
    from tests.export.tiny import tiny_models

    other, _ = tiny_models(seed=1)  # same architecture, other weights
    result = decoder_parity(DecoderForExport(other), tiny.bundle / "decoder.onnx", 4, np.random.default_rng(0), 1e-4)
    assert not result.passed and result.metrics["max_abs_image"] > 1e-4
    same = decoder_parity(DecoderForExport(tiny.decoder), tiny.bundle / "decoder.onnx", 4, np.random.default_rng(0), 1e-4)
    assert same.passed


def test_a_parity_failure_fails_the_node_and_keeps_the_old_bundle(tiny, tmp_path, monkeypatch):
    import bitlatent.pipelines.export.nodes as nodes
    from bitlatent.datasets.models import LatentParts

    staged = []

    def failing_export(decoder, text, out_dir, config, library, entropy_model):
        staged.append(out_dir)
        (out_dir / "decoder.onnx").write_bytes(b"half-written")
        raise ParityError("decoder: max |ONNX - torch| = 0.5 (> 0.0001)")

    monkeypatch.setattr(nodes, "export_bundle", failing_export)
    monkeypatch.setattr(nodes, "text_model_parts", lambda model: None)
    with pytest.raises(ParityError, match="0.5"):
        nodes.export_onnx(tiny.decoder, tiny.head, {}, LatentParts(tmp_path / "none"), None,
                          {"scratch_dir": str(tmp_path / "scratch")})
    assert staged and not staged[0].exists(), "the staging folder is removed"
    read_manifest(tiny.bundle)  # the committed bundle is untouched


def test_judge_raises_with_every_failure():
    from bitlatent.export.bundle import _judge

    good = ParityResult("a", {}, True, "a: fine")
    bad = ParityResult("b", {}, False, "b: 1.0 > 0.0001")
    _judge([good])
    with pytest.raises(ParityError, match="b: 1.0"):
        _judge([good, bad])


# ----------------------------------------------------------------------------- sha256 and atomic commit


@pytest.fixture
def bundle_copy(tiny, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(tiny.bundle, copy)
    return copy


def test_a_changed_file_is_detected(bundle_copy):
    path = bundle_copy / "decoder.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="sha256"):
        read_manifest(bundle_copy)
    read_manifest(bundle_copy, verify=False)  # structure is still fine


def test_a_missing_file_or_manifest_is_detected(bundle_copy):
    (bundle_copy / "tokenizer.json").unlink()
    with pytest.raises(BundleError, match="tokenizer.json is missing"):
        read_manifest(bundle_copy)
    (bundle_copy / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_manifest(bundle_copy)
    (bundle_copy / MANIFEST_FILE).unlink()
    with pytest.raises(FileNotFoundError, match="kedro run --pipelines export"):
        read_manifest(bundle_copy)


def test_commit_replaces_the_old_bundle_in_one_rename(bundle_copy, tmp_path):
    target = tmp_path / "models" / "onnx"
    target.mkdir(parents=True)
    (target / "stale.onnx").write_text("old")
    commit_bundle(bundle_copy, target)
    assert not bundle_copy.exists() and not (target / "stale.onnx").exists()
    read_manifest(target)
    assert [p.name for p in target.parent.iterdir()] == ["onnx"]


def test_commit_refuses_an_unfinished_staging_folder(tmp_path):
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "decoder.onnx").write_text("half")
    with pytest.raises(BundleError, match="did not finish"):
        commit_bundle(staging, tmp_path / "onnx")
    assert not (tmp_path / "onnx").exists()


def test_the_committed_bundle_is_readable_by_other_users(tiny):
    import stat

    mode = tiny.bundle.stat().st_mode
    assert mode & stat.S_IRGRP and mode & stat.S_IXGRP, oct(mode)  # not mkdtemp's 0700
