"""torch -> ONNX: the decoder and the text-to-latent model, parity-checked, as one bundle folder.

    from bitlatent.export import ExportConfig, export_bundle, commit_bundle, text_model_parts
    manifest = export_bundle(decoder, text_model_parts(text_to_latent), staging, ExportConfig())
    commit_bundle(staging, "data/06_models/onnx")

The bundle's layout and manifest are described in ``bitlatent.inference.bundle``; the Kedro
pipeline is ``bitlatent.pipelines.export``.
"""

from .bundle import LatentLibraryInput, TextModelParts, commit_bundle, export_bundle, staging_dir
from .config import ExportConfig
from .onnx_export import (
    DecoderForExport,
    PixelShuffleAsConvTranspose,
    TextForExport,
    convert_fp16,
    decoder_for_onnx,
    export_decoder,
    export_text_model,
    graph_io,
)
from .parity import ParityError
from .sources import library_from_latents, text_model_parts

__all__ = [
    "DecoderForExport",
    "ExportConfig",
    "LatentLibraryInput",
    "PixelShuffleAsConvTranspose",
    "ParityError",
    "TextForExport",
    "TextModelParts",
    "commit_bundle",
    "convert_fp16",
    "decoder_for_onnx",
    "export_bundle",
    "export_decoder",
    "export_text_model",
    "graph_io",
    "library_from_latents",
    "staging_dir",
    "text_model_parts",
]
