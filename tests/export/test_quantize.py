"""The int8 decoder (``bitlatent.export.quantize``): calibration sources, what is quantised, errors."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from bitlatent.core.binary import pack_bits
from bitlatent.export.bundle import LatentLibraryInput, _int8_latents
from bitlatent.export.onnx_export import DecoderForExport, export_decoder
from bitlatent.export.parity import decoder_psnr_parity
from bitlatent.export.quantize import quantize_decoder_int8
from tests.export.test_decoder_graph import small_decoder


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("quantize")
    decoder = small_decoder()
    export_decoder(decoder, folder / "decoder.onnx", 18)
    return decoder, folder


def test_random_bit_calibration_gives_a_decoder_close_to_torch(exported):
    decoder, folder = exported
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 2, size=(64, *decoder.latent_spec.shape), dtype=np.uint8)
    quantize_decoder_int8(folder / "decoder.onnx", folder / "int8.onnx", calibration)
    check = rng.integers(0, 2, size=(64, *decoder.latent_spec.shape), dtype=np.uint8)
    result = decoder_psnr_parity(DecoderForExport(decoder).eval(), folder / "int8.onnx", check, min_psnr=30.0)
    assert result.passed, result.message
    model = onnx.load(str(folder / "int8.onnx"))
    quantised = {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}
    silu_inputs = {n.input[0] for n in model.graph.node if n.op_type == "Sigmoid"}
    assert silu_inputs and silu_inputs <= {n.output[0] for n in model.graph.node if n.op_type == "DequantizeLinear"} | quantised
    assert not [p.name for p in folder.iterdir() if p.name.startswith("quantize-")], "scratch folder removed"


def test_calibration_from_a_too_narrow_range_costs_quality(exported):
    """The calibration data matters: latents that are all zeros leave most activations out of range."""
    decoder, folder = exported
    rng = np.random.default_rng(1)
    zeros = np.zeros((32, *decoder.latent_spec.shape), dtype=np.uint8)
    quantize_decoder_int8(folder / "decoder.onnx", folder / "int8_zeros.onnx", zeros)
    check = rng.integers(0, 2, size=(64, *decoder.latent_spec.shape), dtype=np.uint8)
    wrapper = DecoderForExport(decoder).eval()
    narrow = decoder_psnr_parity(wrapper, folder / "int8_zeros.onnx", check, min_psnr=0.0).metrics["psnr_db"]
    quantize_decoder_int8(folder / "decoder.onnx", folder / "int8_random.onnx", check[:32])
    wide = decoder_psnr_parity(wrapper, folder / "int8_random.onnx", check, min_psnr=0.0).metrics["psnr_db"]
    assert wide > narrow + 3


def test_quantize_rejects_empty_or_misshaped_calibration(exported):
    decoder, folder = exported
    with pytest.raises(ValueError, match="M >= 1"):
        quantize_decoder_int8(folder / "decoder.onnx", folder / "x.onnx", np.zeros((0, 4, 4, 4), np.uint8))
    with pytest.raises(ValueError, match="M >= 1"):
        quantize_decoder_int8(folder / "decoder.onnx", folder / "x.onnx", np.zeros((4, 4, 4), np.uint8))
    assert not (folder / "x.onnx").exists()


def test_calibration_takes_library_latents_and_keeps_others_for_the_check():
    decoder = small_decoder()
    spec = decoder.latent_spec
    bits = np.random.default_rng(2).integers(0, 2, size=(10, *spec.shape), dtype=np.uint8)
    library = LatentLibraryInput(pack_bits(bits), np.arange(10).astype(str))
    calibration, check, source = _int8_latents(library, spec, items=256, rng=np.random.default_rng(0))
    assert source == "library" and len(calibration) == 5 and len(check) == 5
    np.testing.assert_array_equal(calibration, bits[:5])
    np.testing.assert_array_equal(check, bits[5:])
    calibration, check, source = _int8_latents(None, spec, items=12, rng=np.random.default_rng(0))
    assert source == "random bits" and calibration.shape == (12, *spec.shape) and check.shape[1:] == spec.shape
    assert set(np.unique(calibration)) == {0, 1}


def test_weights_keep_to_7_bits_so_avx2_kernels_cannot_saturate(exported):
    """uint8 x int8 kernels without VNNI add product pairs in int16: full-range weights saturate there
    (the default decoder fell from 37.8 to 27.3 dB on an AVX2-only CPU). 7-bit weights, |w| <= 64, cannot:
    2 x 255 x 64 < 2**15."""
    decoder, folder = exported
    calibration = np.random.default_rng(2).integers(0, 2, size=(32, *decoder.latent_spec.shape), dtype=np.uint8)
    quantize_decoder_int8(folder / "decoder.onnx", folder / "int8_7bit.onnx", calibration)
    model = onnx.load(str(folder / "int8_7bit.onnx"))
    weights = [onnx.numpy_helper.to_array(t) for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert weights, "the convolution weights are stored as int8"
    assert max(int(np.abs(w.astype(np.int16)).max()) for w in weights) <= 64


@pytest.mark.parametrize("floor", [20.0, 200.0])
def test_an_int8_decoder_under_its_floor_is_left_out_not_fatal(exported, tmp_path, caplog, floor):
    from bitlatent.export.bundle import _add_int8_decoder
    from bitlatent.export.config import ExportConfig

    decoder, folder = exported
    (tmp_path / "decoder.onnx").write_bytes((folder / "decoder.onnx").read_bytes())
    config = ExportConfig(int8_calibration_items=32, int8_min_psnr=floor)
    result = _add_int8_decoder(tmp_path, DecoderForExport(decoder).eval(), None, decoder.latent_spec, config,
                               np.random.default_rng(0))  # fmt: skip
    reached = result.metrics["psnr_db"]
    assert 20.0 < reached < 200.0
    assert result.passed == (floor == 20.0)
    assert (tmp_path / "decoder.int8.onnx").exists() == result.passed
    assert ("goes without the int8 decoder" in caplog.text) == (not result.passed)
