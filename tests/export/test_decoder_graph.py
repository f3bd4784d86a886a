"""The decoder's export form: "pixelshuffle" upsampling as ConvTranspose (``decoder_for_onnx``),
the same numbers as the module it came from, and a compact graph."""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, Upsample
from bitlatent.export import onnx_export
from bitlatent.export.onnx_export import DecoderForExport, PixelShuffleAsConvTranspose, decoder_for_onnx, export_decoder
from bitlatent.export.parity import decoder_parity

SMALL = dict(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(16, 8, 8), blocks_per_stage=(1, 1, 1))


def small_decoder(uniform_bias: bool = False, **overrides) -> BinaryLatentDecoder:
    torch.manual_seed(3)
    decoder = BinaryLatentDecoder(DecoderConfig(**{**SMALL, **overrides})).eval()
    if not uniform_bias:  # trained decoders: the four sub-pixels' biases differ (ICNR init: they do not)
        with torch.no_grad():
            for p in decoder.parameters():
                p.normal_(0.0, 0.2)
    return decoder


def op_counts(path) -> collections.Counter:
    return collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def signs(batch: int, decoder: BinaryLatentDecoder) -> torch.Tensor:
    return torch.randint(0, 2, (batch, *decoder.latent_spec.shape)).float() * 2 - 1


@pytest.mark.parametrize("uniform_bias", [False, True])
def test_the_export_form_computes_what_the_decoder_computes(uniform_bias):
    decoder = small_decoder(uniform_bias)
    view = decoder_for_onnx(decoder)
    layers = [m for m in view.modules() if isinstance(m, PixelShuffleAsConvTranspose)]
    assert len(layers) == 2 and all(m.uniform_bias == uniform_bias for m in layers)
    assert sum(isinstance(m, Upsample) for m in decoder.modules()) == 2  # the original is left as it was
    z = signs(5, decoder)
    with torch.no_grad():
        assert torch.allclose(view(z), decoder(z), atol=1e-6, rtol=0)


def test_a_decoder_without_upsampling_is_exported_as_it_is():
    single_stage = small_decoder(image_size=4, widths=(16,), blocks_per_stage=(1,))
    assert decoder_for_onnx(single_stage) is single_stage


def test_a_pixelshuffle_layer_must_be_a_1x1_conv_to_four_times_the_channels():
    up = Upsample(8, 8)
    up.conv = torch.nn.Conv2d(8, 32, 3, padding=1)  # a 3x3 conv: not a pixelshuffle layer
    with pytest.raises(ValueError, match="1x1 conv"):
        PixelShuffleAsConvTranspose(up)


def test_the_exported_graph_has_conv_transpose_and_small_constants(tmp_path):
    decoder = small_decoder()
    path = export_decoder(decoder, tmp_path / "decoder.onnx")
    ops = op_counts(path)
    assert ops["ConvTranspose"] == 2 and ops["Tile"] == 2 and "DepthToSpace" not in ops
    model = onnx.load(str(path))
    weights = sum(p.numel() for p in decoder.parameters())
    constants = sum(int(np.prod(i.dims)) for i in model.graph.initializer)
    assert constants < weights + 64  # the tiled biases are stored as 2x2 blocks, not full-size maps
    result = decoder_parity(DecoderForExport(decoder), path, 8, np.random.default_rng(0), 1e-5)
    assert result.passed, result.message


def test_both_graph_forms_agree(tmp_path):
    decoder = small_decoder()
    fast = export_decoder(decoder, tmp_path / "fast.onnx")
    plain = tmp_path / "plain.onnx"  # the decoder as torch computes it: Conv + DepthToSpace
    example = torch.randint(0, 2, (2, *decoder.latent_spec.shape), dtype=torch.uint8)
    onnx_export._export(DecoderForExport(decoder), (example,), plain, onnx_export.DECODER_INPUTS,
                        onnx_export.DECODER_OUTPUTS, {"bits": {0: torch.export.Dim("batch", min=1, max=64)}}, 18)
    assert op_counts(plain)["DepthToSpace"] == 2 and "ConvTranspose" not in op_counts(plain)
    bits = np.random.default_rng(1).integers(0, 2, size=(6, 4, 4, 4), dtype=np.uint8)
    a, b = (ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(["image_float"], {"bits": bits})[0]
            for p in (fast, plain))  # fmt: skip
    assert np.abs(a - b).max() < 1e-5


def test_uniform_sub_pixel_biases_go_into_the_conv_transpose(tmp_path):
    path = export_decoder(small_decoder(uniform_bias=True), tmp_path / "decoder.onnx")
    ops = op_counts(path)
    assert ops["ConvTranspose"] == 2 and "Tile" not in ops


def test_the_pipeline_exports_the_conv_transpose_form(tiny):
    for name in ("decoder.onnx", "decoder.fp16.onnx"):
        ops = op_counts(tiny.bundle / name)
        assert ops["ConvTranspose"] == 2 and "DepthToSpace" not in ops, name
