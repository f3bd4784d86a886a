"""Text -> image latent bits, in three modes; the decoder renders the result.

* **retrieve**: the nearest image latents of a library by Hamming distance between the prompt's
  K-bit text code and the library's image codes (nearest first, ties to the lower index).
* **generate**: with a cell prior (``TextToLatentConfig.prior_layers`` > 0), a latent drawn from
  it cell by cell (``prior.py``): each cell's most likely value given the cells before it
  (``temperature == 0``), or sampled from softmax(logits / temperature) with a seed. Without one,
  the predicted bits: argmax, or sampled per bit from ``Bernoulli(sigmoid(logit / temperature))``.
* **refine**: a retrieved latent as the start, moved toward the text model's prediction.
  ``strength = 0`` keeps the retrieved latent, ``strength = 1`` gives what generate gives. With a
  cell prior, the fraction ``strength`` of the retrieved cells least likely given the caption is
  drawn again from the prior, cell by cell, following the cells kept (``CellPrior.refine``).
  Without one, of the bits where the retrieved latent and the predicted bits disagree, the most
  confident fraction ``strength`` (by ``|logit|``) is flipped.

Every mode returns uint8 bits ``(n, C, h, w)`` in {0, 1}: ``core.binary.bits_to_signs`` turns
them into the decoder's input. With several prompts and ``samples`` per prompt, rows are
prompt-major (prompt 0's samples first). Sampling noise depends on ``(seed, sample number)``
only, so a prompt's samples do not change with the other prompts of the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bitlatent.core.binary import unpack_bits

from bitlatent.inference.latents import refine_bits  # torch-free, shared with ONNX inference

from .encoder import TextEncoder, TextFeatures, validate_prompts
from .metrics import hamming_distances
from .model import TextToLatent
from .prior import sample_prior

__all__ = [
    "MODES",
    "Prediction",
    "Generation",
    "predict",
    "image_codes",
    "retrieve",
    "sample_bits",
    "prior_samples",
    "refine_bits",
    "generate_from_features",
    "generate_latents",
]

MODES = ("retrieve", "generate", "refine")


@dataclass
class Prediction:
    bit_logits: np.ndarray
    """float32 (n, C, h, w): per-bit logits of the image latent."""
    code_bits: np.ndarray
    """uint8 (n, K): the text codes."""

    @property
    def bits(self) -> np.ndarray:
        """uint8 (n, C, h, w): the argmax latent (1 where the logit >= 0)."""
        return (self.bit_logits >= 0).astype(np.uint8)


@dataclass
class Generation:
    bits: np.ndarray
    """uint8 (n_prompts * samples, C, h, w), prompt-major: ready for ``bits_to_signs`` + the decoder."""
    prompt_index: np.ndarray
    """int64 (n,): the prompt each row comes from."""
    library_index: np.ndarray | None
    """int64 (n,): the library latent each row started from (retrieve / refine), else None."""


def _model_device(model: TextToLatent) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def predict(model: TextToLatent, features: TextFeatures, batch_size: int = 256) -> Prediction:
    """Bit logits and text codes of every caption in ``features`` (model put in eval mode)."""
    device = _model_device(model)
    was_training = model.training
    model.eval()
    logits, codes = [], []
    for lo in range(0, len(features), batch_size):
        states, mask = features.padded(np.arange(lo, min(lo + batch_size, len(features))), device)  # (B, L, D), (B, L)
        bit_logits, code_logits = model(states, mask)  # (B, C, h, w), (B, K)
        logits.append(bit_logits.float().cpu().numpy())
        codes.append((code_logits >= 0).to(torch.uint8).cpu().numpy())
    model.train(was_training)
    cfg = model.config
    if not logits:
        return Prediction(np.zeros((0, *cfg.latent_spec().shape), np.float32), np.zeros((0, cfg.code_bits), np.uint8))
    return Prediction(np.concatenate(logits), np.concatenate(codes))


def _as_bits(latents: np.ndarray, model: TextToLatent) -> np.ndarray:
    """Latent bits uint8 (M, C, h, w), or packed uint8 (M, bytes) (unpacked with the model's spec)."""
    latents = np.asarray(latents)
    spec = model.latent_spec
    if latents.ndim == 2:
        return unpack_bits(latents, spec)
    if latents.shape[1:] != spec.shape:
        raise ValueError(f"latents are {latents.shape[1:]}, the model predicts {spec.shape}")
    return latents


@torch.no_grad()
def image_codes(model: TextToLatent, latents: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Image latents (M, C, h, w) bits, or packed (M, bytes) -> image codes uint8 (M, K)."""
    device = _model_device(model)
    bits = _as_bits(latents, model)
    was_training = model.training
    model.eval()
    out = np.zeros((len(bits), model.config.code_bits), dtype=np.uint8)
    for lo in range(0, len(bits), batch_size):
        logits = model.image_code_logits(torch.from_numpy(np.ascontiguousarray(bits[lo : lo + batch_size])).to(device))
        out[lo : lo + batch_size] = (logits >= 0).to(torch.uint8).cpu().numpy()
    model.train(was_training)
    return out


def retrieve(code_bits: np.ndarray, library_codes: np.ndarray, k: int = 1) -> np.ndarray:
    """Text codes (n, K) x library codes (M, K) -> int64 (n, k): the k nearest library rows by
    Hamming distance, nearest first, ties broken by the lower index."""
    if not 1 <= k <= len(library_codes):
        raise ValueError(f"k must be in 1..{len(library_codes)} (the library size), got {k}")
    d = hamming_distances(code_bits, library_codes)  # (n, M)
    return np.argsort(d, axis=1, kind="stable")[:, :k].astype(np.int64)


def sample_bits(bit_logits: np.ndarray, temperature: float = 0.0, seed: int = 0, samples: int = 1) -> np.ndarray:
    """Bit logits (n, C, h, w) -> bits uint8 (n, samples, C, h, w).

    ``temperature == 0``: the argmax, repeated. Otherwise bit ~ Bernoulli(sigmoid(logit / T)),
    with sample j's uniform noise drawn from a generator seeded by (seed, j): the same seed gives
    the same bits; a higher temperature gives more bits against the argmax.
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    logits = torch.from_numpy(np.asarray(bit_logits, dtype=np.float32))  # (n, C, h, w)
    if temperature == 0:
        return np.repeat((logits >= 0).to(torch.uint8).numpy()[:, None], samples, axis=1)
    p = torch.sigmoid(logits / temperature)  # (n, C, h, w)
    out = np.empty((len(logits), samples, *logits.shape[1:]), dtype=np.uint8)
    for j in range(samples):
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + j)
        u = torch.rand(logits.shape[1:], generator=g)  # (C, h, w), shared by the prompts
        out[:, j] = (u[None] < p).to(torch.uint8).numpy()
    return out


def prior_samples(model: TextToLatent, features: TextFeatures, temperature: float = 0.0, seed: int = 0,
                  samples: int = 1, batch_size: int = 256, guidance: float | None = None,
                  start: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:  # fmt: skip
    """Latents drawn from the model's cell prior -> bits uint8 (n, samples, C, h, w). Sample j's
    draws come from a generator seeded by (seed, j); at temperature 0 (greedy) all are alike.
    ``guidance``: classifier-free guidance weight (``CellPrior.sample``; 1: none; None: the
    model's ``prior_guidance``). ``start`` (n, samples, C, h, w) bits: each refined instead, the
    fraction ``strength`` of its cells drawn again (``CellPrior.refine``)."""
    guidance = model.config.prior_guidance if guidance is None else float(guidance)
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if temperature == 0 and start is None:
        once = sample_prior(model.prior, features, 0.0, batch_size=batch_size, guidance=guidance)  # (n, C, h, w)
        return np.repeat(once[:, None], samples, axis=1)
    draws = [sample_prior(model.prior, features, temperature, int(seed) * 1_000_003 + j, batch_size, guidance,
                          start=None if start is None else start[:, j], strength=strength)
             for j in range(samples)]  # fmt: skip
    return np.stack(draws, axis=1)


def generate_from_features(
    model: TextToLatent,
    features: TextFeatures,
    mode: str = "generate",
    *,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    strength: float = 0.5,
    library: np.ndarray | None = None,
    library_codes: np.ndarray | None = None,
    batch_size: int = 256,
    guidance: float | None = None,
) -> Generation:
    """Latent bits for already-encoded captions (see ``generate_latents``)."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    n = len(features)
    pred = predict(model, features, batch_size)
    prompt_index = np.repeat(np.arange(n, dtype=np.int64), samples)
    if mode == "generate":
        if model.prior is not None:
            bits = prior_samples(model, features, temperature, seed, samples, batch_size, guidance)  # (n, S, C, h, w)
        else:
            bits = sample_bits(pred.bit_logits, temperature, seed, samples)  # (n, S, C, h, w)
        return Generation(bits.reshape(n * samples, *bits.shape[2:]), prompt_index, None)
    if library is None:
        raise ValueError(f"mode {mode!r} needs a latent library (the image latents to search)")
    library = _as_bits(library, model)
    if library_codes is None:
        library_codes = image_codes(model, library, batch_size)
    nearest = retrieve(pred.code_bits, library_codes, k=samples)  # (n, S)
    start = library[nearest.reshape(-1)]  # (n * S, C, h, w)
    if mode == "retrieve":
        return Generation(start.astype(np.uint8), prompt_index, nearest.reshape(-1))
    if model.prior is not None:
        bits = prior_samples(model, features, temperature, seed, samples, batch_size, guidance,
                             start=start.reshape(n, samples, *start.shape[1:]), strength=strength)  # (n, S, C, h, w)
        return Generation(bits.reshape(n * samples, *bits.shape[2:]), prompt_index, nearest.reshape(-1))
    target = sample_bits(pred.bit_logits, temperature, seed, samples)  # (n, S, C, h, w)
    logits = np.repeat(pred.bit_logits, samples, axis=0)  # (n * S, C, h, w)
    bits = refine_bits(start, logits, strength, target.reshape(n * samples, *target.shape[2:]))
    return Generation(bits, prompt_index, nearest.reshape(-1))


def generate_latents(
    prompts: str | Sequence[str],
    encoder: TextEncoder,
    model: TextToLatent,
    mode: str = "generate",
    *,
    samples: int = 1,
    temperature: float = 0.0,
    seed: int = 0,
    strength: float = 0.5,
    library: np.ndarray | None = None,
    library_codes: np.ndarray | None = None,
    batch_size: int = 256,
    guidance: float | None = None,
) -> Generation:
    """Prompts -> latent bits uint8 (n_prompts * samples, C, h, w), in one of ``MODES``.

    ``library``: image latents (M, C, h, w) bits or packed (M, bytes), needed by retrieve / refine;
    ``library_codes`` (M, K): their image codes, when precomputed. ``samples``: per prompt (retrieve:
    the ``samples`` nearest; generate / refine: ``samples`` draws, all equal when temperature is 0).
    ``guidance``: the cell prior's classifier-free guidance (generate / refine with a prior).
    An empty or whitespace-only prompt is a ValueError; over-long prompts are cut with a warning.
    """
    prompts = validate_prompts(prompts)
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")
    features = encoder.encode(prompts, model.config.max_length, batch_size=batch_size, progress=False)
    return generate_from_features(
        model, features, mode, samples=samples, temperature=temperature, seed=seed, strength=strength,
        library=library, library_codes=library_codes, batch_size=batch_size, guidance=guidance,
    )  # fmt: skip
