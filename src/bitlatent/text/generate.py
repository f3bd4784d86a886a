"""Text -> image latent bits with the torch models: ``generate_latents(prompts, encoder, model, mode)``.

    prompts -> TextEncoder (MiniLM)                  TextFeatures (token states)
            -> TextToLatent                          bit_logits (N, C, h, w), code_bits (N, K)
            -> generate / retrieve / refine          bits uint8 (N * samples, C, h, w), prompt-major
               (``bitlatent.generation``, shared with the ONNX path; a cell prior's draws run
               ``CellPrior.step`` cell by cell: ``prior.sample_prior``)

``core.binary.bits_to_signs`` turns the bits into the decoder's input. The modes, their options
and their random draws are ``bitlatent.generation``'s: the same seed gives the same latents here
and through an ONNX bundle exported from the same model.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import torch

from bitlatent.core.binary import unpack_bits
from bitlatent.generation import (
    MODES, Generation, Prediction, cell_uniforms, check_mode, code_signs, generate_bits, prompt_keys,
)

from .encoder import TextEncoder, TextFeatures, validate_prompts
from .model import TextToLatent
from .prior import sample_prior

__all__ = ["MODES", "predict", "image_codes", "generate_from_features", "generate_latents"]


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


def _draw_prior(model: TextToLatent, features: TextFeatures, temperature: float, seed: int, samples: int,
                batch_size: int, guidance: float, keys: np.ndarray, start: np.ndarray | None,
                strength: float) -> np.ndarray:  # fmt: skip
    """``generation.PriorDraw`` with the model's cell prior -> bits uint8 (N * samples, C, h, w)."""
    if temperature == 0 and start is None:  # greedy: every sample is the same draw
        once = sample_prior(model.prior, features, 0.0, batch_size=batch_size, guidance=guidance)  # (N, C, h, w)
        return np.repeat(once, samples, axis=0)
    uniforms = cell_uniforms(seed, samples, keys, model.prior.config.num_cells)  # (N * S, T)
    return sample_prior(model.prior, features, temperature, uniforms, samples, batch_size, guidance, start, strength)


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
    keys: np.ndarray | None = None,
) -> Generation:
    """Latent bits for already-encoded captions (see ``generate_latents``). ``keys`` (N,): the
    captions' keys of the cell prior's random stream (``generation.prompt_keys`` of their token
    ids, as ``generate_latents`` and the ONNX path use); None: their row numbers."""
    check_mode(mode)
    pred = predict(model, features, batch_size)
    latents = None if library is None else _as_bits(library, model)
    if latents is not None and library_codes is None and mode != "generate":
        library_codes = image_codes(model, latents, batch_size)
    draw_prior = None
    if model.prior is not None:
        guidance = model.config.prior_guidance if guidance is None else float(guidance)
        keys = np.arange(len(features)) if keys is None else keys

        def draw_prior(start: np.ndarray | None, strength: float) -> np.ndarray:
            return _draw_prior(model, features, temperature, seed, samples, batch_size, guidance, keys, start, strength)

    return generate_bits(mode, pred, samples=samples, temperature=temperature, seed=seed, strength=strength,
                         library_signs=None if library_codes is None else code_signs(library_codes), draw_prior=draw_prior,
                         library_latents=None if latents is None else (lambda rows: latents[rows]))  # fmt: skip


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
    """Prompts -> latent bits uint8 (n_prompts * samples, C, h, w), in one of ``MODES``
    (``generation.generate_bits``).

    ``library``: image latents (M, C, h, w) bits or packed (M, bytes), needed by retrieve / refine;
    ``library_codes`` (M, K): their image codes, when precomputed. ``samples``: per prompt (retrieve:
    the ``samples`` nearest; generate / refine: ``samples`` draws, all equal when temperature is 0).
    ``guidance``: the cell prior's classifier-free guidance (generate / refine with a prior).
    An empty or whitespace-only prompt is a ValueError; over-long prompts are cut with a warning.
    """
    prompts = validate_prompts(prompts)
    check_mode(mode)
    features = encoder.encode(prompts, model.config.max_length, batch_size=batch_size, progress=False)
    keys = None
    if model.prior is not None:  # the cell prior's draws are keyed by the prompts' token ids
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # encode has warned about over-long prompts already
            ids, mask = encoder.tokenize(prompts, model.config.max_length)
        keys = prompt_keys(ids.numpy(), mask.numpy())
    return generate_from_features(
        model, features, mode, samples=samples, temperature=temperature, seed=seed, strength=strength,
        library=library, library_codes=library_codes, batch_size=batch_size, guidance=guidance, keys=keys,
    )  # fmt: skip
