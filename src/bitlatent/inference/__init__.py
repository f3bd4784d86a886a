"""ONNX Runtime inference for exported bundles: ``onnxruntime``, ``tokenizers``, numpy, Pillow.

The modes and their random draws are ``bitlatent.generation``'s, shared with the torch path.
Importing this package never imports torch (tests/inference checks it in a fresh process), so
a serving image needs neither torch nor transformers.

    from bitlatent.inference import OnnxGenerator
    images = OnnxGenerator("data/06_models/onnx").generate(["a red circle"])  # uint8 (1, H, W, 3)
"""

from bitlatent.generation import MODES, Generation, Prediction

from .bundle import BundleError, read_manifest, sha256_file, verify_files
from .generator import (
    OnnxGenerator,
    available_providers,
    cpu_decode_batch,
    encode_png,
    generate_images,
    session_options,
)
from .prompts import PromptTokenizer, Tokenized, validate_prompts
from .providers import Placement, ProviderError, open_session

__all__ = [
    "MODES",
    "BundleError",
    "Generation",
    "OnnxGenerator",
    "Placement",
    "Prediction",
    "PromptTokenizer",
    "ProviderError",
    "Tokenized",
    "available_providers",
    "cpu_decode_batch",
    "encode_png",
    "generate_images",
    "open_session",
    "read_manifest",
    "session_options",
    "sha256_file",
    "validate_prompts",
    "verify_files",
]
