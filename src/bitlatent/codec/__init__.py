"""Entropy-coded bitstreams of binary latents (issue #25): a latent ``bits`` uint8 (C, h, w) becomes a
few bytes, range coded with a masked bit-level prior's probabilities. Needs numpy and constriction
only: the prior is a plain callable (``BitLogits``), whatever runs it (torch, onnxruntime).

    from bitlatent.codec import Codec
    codec = Codec(logits_fn, latent_shape=(8, 16, 16), model_id="01234567")
    data = codec.compress(bits)               # bits uint8 (C, h, w) -> bytes
    assert (codec.decompress(data) == bits).all()

Modules: ``schedule`` (which bits each model call codes), ``coder`` (the coding), ``header`` (the stream
container: version, shape, model id, the latent's CRC32), ``errors`` (``CodecError``), ``container`` (the file of streams
of ``bitlatent encode --compress``), ``measure`` (stream sizes and times, checked), ``logits`` (the
``logits_fn`` of a runtime: onnxruntime's here). Torch only, imported on their own: ``entropy_model``
(the masked bit-level prior and its ``torch_logits``) and ``entropy_train`` (its training).
"""

from . import coder
from .coder import (
    PROBABILITY_BITS,
    BitLogits,
    Codec,
    compress,
    compress_batch,
    decompress,
    decompress_batch,
    ideal_bits,
    quantised_probabilities,
)
from .errors import CodecError
from .header import FORMAT_VERSION, HEADER_BYTES, Header, read_header
from .schedule import DEFAULT_STAGES, coding_stages, stage_sizes

__all__ = [  # the coding functions and Codec, and the format's names a caller needs
    *coder.__all__,
    "CodecError",
    "DEFAULT_STAGES",
    "FORMAT_VERSION",
    "HEADER_BYTES",
    "Header",
    "coding_stages",
    "read_header",
    "stage_sizes",
]
