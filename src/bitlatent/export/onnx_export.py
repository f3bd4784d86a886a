"""torch -> ONNX for the decoder and the text-to-latent model (opset 18, dynamo exporter).

    decoder.onnx         bits uint8 (batch, C, h, w) in {0, 1}
                           -> image       uint8   (batch, H, W, 3)   round(255 * pixel), RGB
                           -> image_float float32 (batch, 3, H, W)   pixels in [0, 1]
    text_to_latent.onnx  input_ids, attention_mask int64 (batch, sequence)
                           -> bit_logits float32 (batch, C, h, w)
                           -> bits       uint8   (batch, C, h, w)    1 where bit_logits >= 0
                           -> code_bits  uint8   (batch, K)          the text code, for retrieval

The decoder reads bits, not signs, so the text model's ``bits`` feed it directly (Triton's
ensemble does exactly that). Both graphs are one file each (weights inside; external data
only past ONNX's 2 GB protobuf limit). fp16 variants keep the same inputs and outputs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import onnx
import torch
import torch.nn as nn

__all__ = [
    "DecoderForExport",
    "TextForExport",
    "export_decoder",
    "export_text_model",
    "convert_fp16",
    "graph_io",
    "DECODER_INPUTS",
    "DECODER_OUTPUTS",
    "TEXT_INPUTS",
    "TEXT_OUTPUTS",
]

log = logging.getLogger(__name__)

DECODER_INPUTS = ["bits"]
DECODER_OUTPUTS = ["image", "image_float"]
TEXT_INPUTS = ["input_ids", "attention_mask"]
TEXT_OUTPUTS = ["bit_logits", "bits", "code_bits"]
_PROTOBUF_LIMIT = 1_800_000_000  # bytes of weights past which external data is used (limit: 2 GiB)

DOCS = {
    "bits": "latent bits in {0, 1}, layout (C, h, w) as LatentSpec",
    "image": "RGB pixels, round(255 * image_float), channels last",
    "image_float": "RGB pixels in [0, 1], channels first (the decoder's own output)",
    "input_ids": "MiniLM wordpiece ids: [CLS] tokens [SEP] [PAD]...",
    "attention_mask": "1 on real tokens, 0 on padding",
    "bit_logits": "per-bit logits of the image latent; bit = 1 where logit >= 0",
    "code_bits": "K-bit text code for Hamming retrieval against the library's image codes",
}


class DecoderForExport(nn.Module):
    """bits uint8 (B, C, h, w) -> (image uint8 (B, H, W, 3), image_float float32 (B, 3, H, W))."""

    def __init__(self, decoder: nn.Module):
        super().__init__()
        self.decoder = decoder

    def forward(self, bits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        signs = bits.to(torch.float32) * 2 - 1  # (B, C, h, w) in {-1, +1}
        image = self.decoder(signs)  # (B, 3, H, W) in [0, 1]
        pixels = (image * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)  # (B, H, W, 3)
        return pixels, image


class TextForExport(nn.Module):
    """(input_ids, attention_mask) int64 (B, L) -> bit_logits (B, C, h, w), bits, code_bits (B, K)."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, 384)
        bit_logits, code_logits = self.head(states.float(), attention_mask)  # (B, C, h, w), (B, K)
        return bit_logits, (bit_logits >= 0).to(torch.uint8), (code_logits >= 0).to(torch.uint8)


def _weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_shapes: dict[str, Any], opset: int) -> None:  # fmt: skip
    module = module.eval()
    external = _weight_bytes(module) > _PROTOBUF_LIMIT
    chatty = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
    levels = [logger.level for logger in chatty]
    for logger in chatty:
        logger.setLevel(logging.ERROR)  # an INFO line per deduplicated weight, "torchvision is not installed"
    try:
        _run_exporter(module, args, path, input_names, output_names, dynamic_shapes, opset, external)
    finally:
        for logger, level in zip(chatty, levels):
            logger.setLevel(level)
    onnx.checker.check_model(str(path), full_check=False)
    model = onnx.load(str(path), load_external_data=False)
    got_in = [i.name for i in model.graph.input]
    got_out = [o.name for o in model.graph.output]
    if got_in != input_names or got_out != output_names:
        raise RuntimeError(f"{path.name}: exported inputs {got_in} / outputs {got_out}, expected {input_names} / {output_names}")


def _run_exporter(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
                  dynamic_shapes: dict[str, Any], opset: int, external: bool) -> None:  # fmt: skip
    with warnings.catch_warnings(), torch.no_grad(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the exporter's deprecation chatter
        torch.onnx.export(
            module, args, str(path), input_names=input_names, output_names=output_names,
            opset_version=opset, dynamic_shapes=dynamic_shapes, external_data=external, dynamo=True,
            verbose=False,
        )  # fmt: skip


def export_decoder(decoder: nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Write ``decoder.onnx``: bits (dynamic batch) -> image, image_float."""
    path = Path(path)
    spec = decoder.latent_spec
    wrapper = DecoderForExport(decoder).eval()
    example = torch.randint(0, 2, (2, *spec.shape), dtype=torch.uint8)  # batch 2: no 0/1 specialisation
    batch = torch.export.Dim("batch", min=1, max=65536)
    _export(wrapper, (example,), path, DECODER_INPUTS, DECODER_OUTPUTS, {"bits": {0: batch}}, opset)
    return path


def export_text_model(encoder: nn.Module, head: nn.Module, path: str | Path, opset: int = 18,
                      pad_id: int = 0, cls_id: int = 101, sep_id: int = 102) -> Path:  # fmt: skip
    """Write ``text_to_latent.onnx``: input_ids, attention_mask (dynamic batch and sequence) ->
    bit_logits, bits, code_bits."""
    path = Path(path)
    wrapper = TextForExport(encoder, head).eval()
    ids = torch.tensor([[cls_id, 2000, 2003, 1037, sep_id], [cls_id, 3000, sep_id, pad_id, pad_id]], dtype=torch.int64)
    mask = (ids != pad_id).to(torch.int64)
    batch = torch.export.Dim("batch", min=1, max=65536)
    sequence = torch.export.Dim("sequence", min=2, max=512)
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    _export(wrapper, (ids, mask), path, TEXT_INPUTS, TEXT_OUTPUTS, shapes, opset)
    return path


def convert_fp16(src: str | Path, dst: str | Path) -> Path:
    """float32 graph -> float16 weights and compute, inputs and outputs kept as they were.

    Uses ``onnxruntime.transformers.float16`` (shipped with onnxruntime and onnxruntime-gpu).
    """
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(src))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        half = convert_float_to_float16(model, keep_io_types=True, disable_shape_infer=False)
    onnx.save(half, str(dst))
    onnx.checker.check_model(str(dst), full_check=False)
    return Path(dst)


_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.UINT8: "uint8",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.BOOL: "bool",
}


def graph_io(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Inputs and outputs of an ONNX file: ``{"inputs": [{name, dtype, shape, doc}], "outputs": [...],
    "ir_version": n}``; a dynamic dim is its name ("batch", "sequence"), a fixed one an int."""
    model = onnx.load(str(path), load_external_data=False)

    def describe(values) -> list[dict[str, Any]]:
        out = []
        for v in values:
            t = v.type.tensor_type
            shape = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in t.shape.dim]
            out.append({"name": v.name, "dtype": _DTYPES.get(t.elem_type, str(t.elem_type)), "shape": shape,
                        "doc": DOCS.get(v.name, "")})  # fmt: skip
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output), "ir_version": int(model.ir_version)}
