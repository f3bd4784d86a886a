"""torch -> ONNX for the decoder and the text-to-latent model (opset 18, dynamo exporter).

    decoder.onnx         bits uint8 (batch, C, h, w) in {0, 1}
                           -> image       uint8   (batch, H, W, 3)   round(255 * pixel), RGB
                           -> image_float float32 (batch, 3, H, W)   pixels in [0, 1]
    text_to_latent.onnx  input_ids, attention_mask int64 (batch, sequence)
                           -> bit_logits float32 (batch, C, h, w)
                           -> bits       uint8   (batch, C, h, w)    1 where bit_logits >= 0
                           -> code_bits  uint8   (batch, K)          the text code, for retrieval
                           -> prior_tokens float32 (batch, sequence, d)  only with a cell prior
    prior_context.onnx   what the cell prior reads of a caption, once per caption: prior_tokens,
                         attention_mask [, uncaptioned bool (batch,)] -> context_keys_<i>,
                         context_values_<i> float32 (batch, H, sequence, d/H) for each block i,
                         context_bias float32 (batch, 1, 1, sequence)
    prior.onnx           one step of the cell prior, a block of k = patch^2 cells: previous_cell
                         uint8 (batch, k*C), step int64 (1,), keys_<i>, values_<i> float32
                         (batch, H, h*w/k, d/H), and prior_context.onnx's outputs -> cell_logits
                         (batch, k * 2^C), cell_keys_<i>, cell_values_<i> (batch, H, 1, d/H): the
                         caller stores them in slot `step`

The decoder reads bits, not signs, so the text model's ``bits`` feed it directly (Triton's
ensemble does exactly that). Both graphs are one file each (weights inside; external data
only past ONNX's 2 GB protobuf limit). fp16 variants keep the same inputs and outputs.

The decoder graph is the decoder's own arithmetic in a form ONNX Runtime runs faster
(``decoder_for_onnx``): each "pixelshuffle" upsampling (1x1 conv to 4x channels + depth-to-space)
is exported as the equivalent 2x2 stride-2 ConvTranspose (+ a per-sub-pixel bias when the four
sub-pixels' biases differ). ORT's CPU optimiser lays convolutions out in blocked NCHWc form and
has no blocked DepthToSpace, so the original form costs a reorder out of the blocked layout (of
the 4x-channel conv output), the depth-to-space copy and a reorder back at each upsampling; the
transposed convolution writes the upsampled image directly, saving the copy, and its input, half
as big, is what leaves the blocked layout (faster at batch 1 and 64, ``benchmarks/README.md``).
The parity check compares the exported graph with the original module, so the rewrite is checked
on every export.
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "DecoderForExport",
    "PixelShuffleAsConvTranspose",
    "TextForExport",
    "PriorContextForExport",
    "PriorForExport",
    "decoder_for_onnx",
    "export_decoder",
    "export_text_model",
    "export_prior",
    "export_prior_context",
    "prior_context_io",
    "prior_io",
    "text_outputs",
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
    "prior_tokens": "the caption's token states as the cell prior reads them (prior_context.onnx's input)",
    "context_keys": "block <i>'s cross-attention keys of the caption's tokens (prior_context.onnx -> prior.onnx)",
    "context_values": "block <i>'s cross-attention values of the caption's tokens, as context_keys",
    "context_bias": "0 on the caption's tokens, -1e9 on padding: added to the cross-attention scores",
    "previous_cell": "the bits of the k = patch^2 cells of step - 1 (prior order), in {0, 1} (ignored at step 0)",
    "step": "index of the block of cells to predict, 0 .. h*w/k - 1 (raster order of patch x patch blocks)",
    "keys": "block <i>'s self-attention keys of steps 0 .. step - 1 in slots 0 .. step - 1 (later slots unread)",
    "values": "block <i>'s self-attention values, as keys",
    "cell_logits": "logits of the 2^C values (bit 0 most significant) of each of step's k cells, cell after cell, given the steps before",
    "cell_keys": "step's keys in block <i> (batch, H, 1, d/H): store them in slot `step` of keys_<i> for the next call",
    "cell_values": "step's values in block <i>, as cell_keys",
    "uncaptioned": "rows that read the 'no caption' token instead of their caption (classifier-free guidance)",
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


class PixelShuffleAsConvTranspose(nn.Module):
    """A "pixelshuffle" ``Upsample`` (act, 1x1 conv c_in -> 4*c_out, depth-to-space) as act + one 2x2
    stride-2 transposed convolution: the same weights, rearranged, and the same sums.

    Output channel ``4c + 2a + b`` of the 1x1 conv at cell (i, j) is pixel (2i + a, 2j + b) of
    channel c after depth-to-space (torch's pixel_shuffle = ONNX DepthToSpace, mode CRD), which is
    what ``conv_transpose2d`` with weight[k, c, a, b] = W[4c + 2a + b, k] and stride 2 computes.
    The 1x1 conv's bias has one value per (c, a, b); ConvTranspose's has one per c, so when the
    four sub-pixels' biases differ they are added as a (c, 2, 2) tile over the output."""

    def __init__(self, upsample: nn.Module):
        super().__init__()
        conv = upsample.conv
        if tuple(conv.kernel_size) != (1, 1) or conv.out_channels % 4:
            raise ValueError("expected a 1x1 conv to 4 * c_out channels (a 'pixelshuffle' Upsample)")
        self.act = upsample.act
        c_out = conv.out_channels // 4
        weight = conv.weight.detach()[:, :, 0, 0].reshape(c_out, 2, 2, conv.in_channels)  # (c, a, b, k)
        self.register_buffer("weight", weight.permute(3, 0, 1, 2).contiguous())  # (c_in, c_out, 2, 2)
        bias = conv.bias.detach().reshape(1, c_out, 2, 2)  # (1, c, a, b)
        self.uniform_bias = bool((bias == bias[:, :, :1, :1]).all())  # true at ICNR init
        self.register_buffer("bias", bias[0, :, 0, 0].contiguous() if self.uniform_bias else bias.contiguous())

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, h, w) -> (B, c_out, 2h, 2w)
        x = self.act(x)
        if self.uniform_bias:
            return F.conv_transpose2d(x, self.weight, self.bias, stride=2)
        h, w = x.shape[-2:]
        return F.conv_transpose2d(x, self.weight, stride=2) + self.bias.repeat(1, 1, h, w)


def decoder_for_onnx(decoder: nn.Module) -> nn.Module:
    """The decoder as it is exported: a copy with each ``Upsample`` replaced by a
    ``PixelShuffleAsConvTranspose`` (no such layer: the decoder itself)."""
    from bitlatent.core.decoder import Upsample

    targets = [name for name, m in decoder.named_modules() if isinstance(m, Upsample)]
    if not targets:
        return decoder
    view = copy.deepcopy(decoder).eval()
    for name in targets:
        parent_name, _, child = name.rpartition(".")
        parent = view.get_submodule(parent_name) if parent_name else view
        setattr(parent, child, PixelShuffleAsConvTranspose(parent.get_submodule(child)))
    return view


class TextForExport(nn.Module):
    """(input_ids, attention_mask) int64 (B, L) -> bit_logits (B, C, h, w), bits, code_bits (B, K),
    and, when the head has a cell prior, prior_tokens (B, L, d): the caption as the prior reads it."""

    def __init__(self, encoder: nn.Module, head: nn.Module):
        super().__init__()
        self.encoder = encoder
        self.head = head

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, 384)
        bit_logits, code_logits = self.head(states.float(), attention_mask)  # (B, C, h, w), (B, K)
        out = (bit_logits, (bit_logits >= 0).to(torch.uint8), (code_logits >= 0).to(torch.uint8))
        if getattr(self.head, "prior", None) is not None:
            out += (self.head.prior.encode_text(states.float()),)  # (B, L, d)
        return out


def text_outputs(head: nn.Module) -> list[str]:
    """The text graph's outputs: ``TEXT_OUTPUTS``, plus ``prior_tokens`` when ``head`` has a cell prior."""
    return TEXT_OUTPUTS + (["prior_tokens"] if getattr(head, "prior", None) is not None else [])


def _per_block(name: str, prior: nn.Module) -> list[str]:
    """``name_0`` .. ``name_<layers - 1>``: one graph input or output per block of the prior."""
    return [f"{name}_{i}" for i in range(prior.config.layers)]


def prior_context_io(prior: nn.Module) -> tuple[list[str], list[str]]:
    """``prior_context.onnx``'s inputs (``uncaptioned`` for a prior with a "no caption" token) and outputs."""
    inputs = ["prior_tokens", "attention_mask"] + (["uncaptioned"] if getattr(prior, "null", None) is not None else [])
    return inputs, _per_block("context_keys", prior) + _per_block("context_values", prior) + ["context_bias"]


def prior_io(prior: nn.Module) -> tuple[list[str], list[str]]:
    """``prior.onnx``'s inputs and outputs: the context inputs are named as ``prior_context.onnx``'s outputs."""
    context = prior_context_io(prior)[1]
    inputs = ["previous_cell", "step"] + _per_block("keys", prior) + _per_block("values", prior) + context
    return inputs, ["cell_logits"] + _per_block("cell_keys", prior) + _per_block("cell_values", prior)


class PriorContextForExport(nn.Module):
    """What the cell prior reads of the captions (``CellPrior.context``): prior_tokens float32
    (B, L, d), attention_mask int64 (B, L) [, uncaptioned bool (B,): rows that read the "no
    caption" token instead, for classifier-free guidance; priors trained with caption dropout
    only] -> per block context_keys, then per block context_values float32 (B, H, L, d/H),
    context_bias float32 (B, 1, 1, L)."""

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior

    def forward(self, prior_tokens: torch.Tensor, attention_mask: torch.Tensor, uncaptioned: torch.Tensor | None = None):
        if uncaptioned is not None:
            prior_tokens, attention_mask = self.prior.without_caption(prior_tokens, attention_mask, uncaptioned)
        keys, values, bias = self.prior.context(prior_tokens, attention_mask)
        return (*keys, *values, bias)


class PriorForExport(nn.Module):
    """One step of the cell prior (``CellPrior.step``): previous_cell uint8 (B, k*C), the k =
    patch**2 cells of the block before, step int64 (1,), then ``tensors``, the graph's other
    inputs in ``prior_io`` order: per block keys, per block values (B, H, S, d/H), then
    ``PriorContextForExport``'s outputs -> cell_logits float32 (B, k * 2^C), per block cell_keys,
    per block cell_values float32 (B, H, 1, d/H)."""

    def __init__(self, prior: nn.Module):
        super().__init__()
        self.prior = prior

    def forward(self, previous_cell: torch.Tensor, step: torch.Tensor, *tensors: torch.Tensor):
        n = self.prior.config.layers
        keys, values, context_keys, context_values = (list(tensors[i * n : (i + 1) * n]) for i in range(4))
        logits, key, value = self.prior.step(previous_cell, step, keys, values, (context_keys, context_values, tensors[-1]))
        return (logits, *key, *value)


def _weight_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def _export(module: nn.Module, args: tuple, path: Path, input_names: list[str], output_names: list[str],
            dynamic_shapes: dict[str, Any] | tuple, opset: int) -> None:  # fmt: skip
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
    """Write ``decoder.onnx``: bits (dynamic batch) -> image, image_float, with the upsampling as
    ConvTranspose (``decoder_for_onnx``)."""
    path = Path(path)
    spec = decoder.latent_spec
    wrapper = DecoderForExport(decoder_for_onnx(decoder)).eval()
    example = torch.randint(0, 2, (2, *spec.shape), dtype=torch.uint8)  # batch 2: no 0/1 specialisation
    batch = torch.export.Dim("batch", min=1, max=65536)
    _export(wrapper, (example,), path, DECODER_INPUTS, DECODER_OUTPUTS, {"bits": {0: batch}}, opset)
    if _weight_bytes(decoder) <= _PROTOBUF_LIMIT:
        _untile_bias_constants(path)
    return path


def _untile_bias_constants(path: Path) -> int:
    """The exporter folds ``PixelShuffleAsConvTranspose``'s tiled bias into a full-size constant
    (1, c, H, W), as big as one image's activations. Store the (1, c, 2, 2) block and a Tile
    instead (ONNX Runtime folds it back when the session starts): an initializer that only Add
    nodes read and that is exactly its top-left 2x2 block repeated is replaced. Returns how many."""
    model = onnx.load(str(path))
    graph = model.graph
    readers: dict[str, set[str]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, set()).add(node.op_type)
    tiles = []
    for init in list(graph.initializer):
        dims = list(init.dims)
        if (readers.get(init.name) != {"Add"} or init.data_type != onnx.TensorProto.FLOAT or len(dims) != 4
                or dims[0] != 1 or dims[2] % 2 or dims[3] % 2 or dims[2] * dims[3] <= 4):  # fmt: skip
            continue
        full = onnx.numpy_helper.to_array(init)
        block = full[:, :, :2, :2]
        repeats = np.array([1, 1, dims[2] // 2, dims[3] // 2], dtype=np.int64)
        if not np.array_equal(np.tile(block, repeats), full):
            continue
        graph.initializer.remove(init)
        graph.initializer.extend([onnx.numpy_helper.from_array(np.ascontiguousarray(block), f"{init.name}_block"),
                                  onnx.numpy_helper.from_array(repeats, f"{init.name}_repeats")])  # fmt: skip
        tiles.append(onnx.helper.make_node("Tile", [f"{init.name}_block", f"{init.name}_repeats"], [init.name],
                                           name=f"{init.name}_tile"))  # fmt: skip
    if tiles:
        nodes = tiles + list(graph.node)
        del graph.node[:]
        graph.node.extend(nodes)
        onnx.save(model, str(path))
        onnx.checker.check_model(str(path), full_check=False)
    return len(tiles)


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
    _export(wrapper, (ids, mask), path, TEXT_INPUTS, text_outputs(head), shapes, opset)
    return path


def _prior_example(prior: nn.Module):
    """Example prior_tokens (2, 5, d) and attention_mask (one prompt padded) for both prior graphs,
    and their dynamic batch and sequence dims."""
    tokens = torch.randn(2, 5, prior.config.width)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.int64)
    return tokens, mask, torch.export.Dim("batch", min=1, max=65536), torch.export.Dim("sequence", min=2, max=512)


def export_prior_context(prior: nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Write ``prior_context.onnx``: what the cell prior reads of the captions (dynamic batch and
    sequence), computed once per caption; ``prior.onnx`` reads its outputs at every cell."""
    path = Path(path)
    tokens, mask, batch, sequence = _prior_example(prior)
    example: tuple = (tokens, mask)
    shapes: dict[str, Any] = {"prior_tokens": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    if prior.null is not None:
        example += (torch.tensor([False, True]),)
        shapes["uncaptioned"] = {0: batch}
    _export(PriorContextForExport(prior).eval(), example, path, *prior_context_io(prior), shapes, opset)
    return path


def export_prior(prior: nn.Module, path: str | Path, opset: int = 18) -> Path:
    """Write ``prior.onnx``, one step of the cell prior with cached keys and values and the
    caption's context (``prior_context.onnx``) (dynamic batch and sequence). ``OnnxGenerator``
    calls it once per cell and stores each call's cell_keys / cell_values in its caches for the next."""
    path = Path(path)
    tokens, mask, batch, sequence = _prior_example(prior)
    cfg = prior.config
    previous = torch.randint(0, 2, (2, cfg.cells_per_step * cfg.bits_per_cell), dtype=torch.uint8)
    keys, values = prior.empty_cache(2)
    with torch.no_grad():
        context_keys, context_values, context_bias = prior.context(tokens, mask)
    n = prior.config.layers
    tensors = (*keys, *values, *context_keys, *context_values, context_bias)
    tensor_shapes = (({0: batch},) * (2 * n) + ({0: batch, 2: sequence},) * (2 * n) + ({0: batch, 3: sequence},))
    example = (previous, torch.tensor([1]), *tensors)
    shapes = ({0: batch}, None, tensor_shapes)  # positional: previous_cell, step, *tensors
    _export(PriorForExport(prior).eval(), example, path, *prior_io(prior), shapes, opset)
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


def _doc(name: str) -> str:
    """``DOCS`` of a graph input or output; a per-block one (``keys_2``) is its family's, for block 2."""
    family, _, block = name.rpartition("_")
    if name not in DOCS and block.isdigit() and family in DOCS:
        return DOCS[family].replace("<i>", block)
    return DOCS.get(name, "")


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
                        "doc": _doc(v.name)})  # fmt: skip
        return out

    return {"inputs": describe(model.graph.input), "outputs": describe(model.graph.output), "ir_version": int(model.ir_version)}
