"""The codec's ``logits_fn`` (``coder.BitLogits``) over an entropy model, with or without captions,
numpy only: ``chunked_logits`` for any runtime, ``onnx_logits`` for the exported graph (a bundle decodes
streams without torch); ``entropy_model.torch_logits`` is the torch one.

    entropy_model.onnx  bits uint8 (batch, C, h, w), known bool (batch, C, h, w),
                        caption_states float32 (batch, sequence, 384), caption_mask int64 (batch, sequence),
                        uncaptioned bool (batch,)  ->  logits float32 (batch, C, h, w)

Streams coded with the ONNX graph name the graph file (``onnx_model_id``: the first 8 hex digits of its
sha256), not the torch weights: the two runtimes' logits differ in the last float bits, which moves some
probabilities to another point of the coder's grid, so a stream decodes only with the runtime that
wrote it, and one of the other runtime is refused by its model id rather than by a failed checksum.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from .coder import BitLogits
from .header import MODEL_ID_DIGITS

__all__ = ["ENTROPY_FILE", "ENTROPY_INPUTS", "ENTROPY_OUTPUTS", "chunked_logits", "onnx_logits", "onnx_model_id"]

ENTROPY_FILE = "entropy_model.onnx"
ENTROPY_INPUTS = ["bits", "known", "caption_states", "caption_mask", "uncaptioned"]
ENTROPY_OUTPUTS = ["logits"]

# run(bits uint8 (B, C, h, w), known bool (B, C, h, w), caption_states float32 (B, L, D),
#     caption_mask int64 (B, L), uncaptioned bool (B,)) -> logits float32 (B, C, h, w): one model call
ModelCall = Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray], np.ndarray]


def chunked_logits(run: ModelCall, text_dim: int, states: np.ndarray | None = None, mask: np.ndarray | None = None,
                   rows_per_call: int = 256) -> BitLogits:  # fmt: skip
    """A ``logits_fn`` that calls ``run`` on at most ``rows_per_call`` rows at a time.

    Without ``states``: every row is coded without a caption (one zero state, uncaptioned). With
    ``states`` float (n, L, text_dim) (MiniLM token states) and ``mask`` (n, L): row i of every call is
    coded given caption i, so the codec must be coding exactly those n latents, in that order."""
    if states is not None:
        states, mask = np.asarray(states, np.float32), np.asarray(mask).astype(np.int64)

    def logits_fn(bits: np.ndarray, known: np.ndarray) -> np.ndarray:
        n = bits.shape[0]
        if states is not None and len(states) != n:
            raise ValueError(f"the logits function holds {len(states)} captions, it was asked for {n} latents")
        out = []
        for lo in range(0, n, rows_per_call):
            hi = min(lo + rows_per_call, n)
            if states is None:
                s, m = np.zeros((hi - lo, 1, text_dim), np.float32), np.ones((hi - lo, 1), np.int64)
                u = np.ones(hi - lo, bool)
            else:
                s, m, u = states[lo:hi], mask[lo:hi], np.zeros(hi - lo, bool)
            out.append(run(np.ascontiguousarray(bits[lo:hi], dtype=np.uint8),
                           np.ascontiguousarray(known[lo:hi], dtype=bool), s, m, u))  # fmt: skip
        return np.concatenate(out) if out else np.zeros(bits.shape, np.float32)

    return logits_fn


def onnx_model_id(path: str | Path) -> str:
    """The model id of streams coded with the ONNX graph at ``path``."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:MODEL_ID_DIGITS]


def onnx_logits(session: Any, states: np.ndarray | None = None, mask: np.ndarray | None = None,
                rows_per_call: int = 256) -> BitLogits:  # fmt: skip
    """``chunked_logits`` over an ``onnxruntime.InferenceSession`` of ``entropy_model.onnx``."""
    text_dim = int(session.get_inputs()[ENTROPY_INPUTS.index("caption_states")].shape[-1])

    def run(*inputs: np.ndarray) -> np.ndarray:
        return session.run(ENTROPY_OUTPUTS, dict(zip(ENTROPY_INPUTS, inputs)))[0]

    return chunked_logits(run, text_dim, states, mask, rows_per_call)
