"""Text -> latent bits: the generation modes and their random draws, in numpy, for both paths.

The torch path (``bitlatent.text.generate``, ``bitlatent generate --torch``, the evaluation) and
the ONNX path (``bitlatent.inference.OnnxGenerator``, the server) compute the text model's
outputs their own way, then both turn them into latents here, so the same prompts, seed and
options give the same latents through either (up to float rounding of the logits).

Modes (``MODES``, ``generate_bits``):

* **generate**: with a cell prior, a latent drawn from it cell by cell (the caller's
  ``draw_prior``); without one, the predicted bits: argmax (``temperature == 0``) or sampled per
  bit from ``Bernoulli(sigmoid(logit / temperature))`` (``sample_bits``).
* **retrieve**: the library latents nearest to the prompt's K-bit text code by Hamming distance
  (nearest first, ties to the lower index: ``nearest``).
* **refine**: a retrieved latent moved toward the text model's prediction; ``strength`` 0 keeps
  it, 1 gives what generate gives. With a cell prior, the fraction ``strength`` of its cells least
  likely given the caption (``cells_to_redraw``) is drawn again from the prior, following the cells
  kept; without one, of the bits where the retrieved latent and the predicted bits disagree, the
  most confident fraction ``strength`` (by ``|logit|``) is flipped (``refine_bits``).

Every mode gives uint8 bits ``(N * samples, C, h, w)`` in {0, 1}, prompt-major (prompt 0's
samples first).

Random streams (the same in both paths):

* per-bit sampling: sample j's uniforms ``(C, h, w)`` come from
  ``numpy.random.default_rng([seed, j])``, shared by the prompts of a call;
* cell-prior draws: row (prompt i, sample j) draws cell t with uniform ``t`` of
  ``numpy.random.default_rng([seed, j, key_i])`` (``cell_uniforms``), ``key_i`` a checksum of the
  prompt's token ids (``prompt_keys``), by inverse CDF of softmax(logits / temperature)
  (``draw_cells``). Keyed by the prompt, a prompt's draws do not depend on the other prompts of
  the call, and different prompts draw independently (uniforms shared by all prompts would make
  the draws of a call move together).

Torch-free: the ONNX path imports this module without torch.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from bitlatent.inference.prompts import Tokenized

__all__ = [
    "MODES",
    "Prediction",
    "Generation",
    "check_mode",
    "default_temperature",
    "generate_bits",
    "sample_bits",
    "refine_bits",
    "code_signs",
    "hamming_distances",
    "nearest",
    "cell_weights",
    "cell_values",
    "cell_bits",
    "cells_to_redraw",
    "prompt_keys",
    "cell_uniforms",
    "draw_cells",
    "sample_cells",
    "cells_in_prior_order",
    "grid_from_prior_order",
]

MODES = ("generate", "retrieve", "refine")


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {MODES}")


def _check_sampling(temperature: float, samples: int) -> None:
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")


def default_temperature(mode: str, has_prior: bool) -> float:
    """1 for generate and refine from a cell prior (its most likely cell is background: greedy
    draws are empty pictures), 0 (the most likely bits) otherwise."""
    return 1.0 if mode in ("generate", "refine") and has_prior else 0.0


@dataclass
class Prediction:
    """The text model's outputs for N prompts."""

    bit_logits: np.ndarray
    """float32 (N, C, h, w): per-bit logits of the image latent."""
    code_bits: np.ndarray | None
    """uint8 (N, K): the text codes (None: a text model without them, which cannot retrieve)."""
    tokens: Tokenized | None = None
    """The prompts' token ids and mask (ONNX path; the torch path reads ``TextFeatures``)."""
    prior_tokens: np.ndarray | None = None
    """float32 (N, L, d): the captions as the cell prior reads them (zero on padding), when an
    ONNX bundle has a prior; L and the mask are ``tokens``'."""

    @property
    def bits(self) -> np.ndarray:
        """uint8 (N, C, h, w): the argmax latent (1 where the logit >= 0)."""
        return (self.bit_logits >= 0).astype(np.uint8)


@dataclass
class Generation:
    """Latents for N prompts, ``samples`` each, ready for ``bits_to_signs`` + the decoder."""

    bits: np.ndarray
    """uint8 (N * samples, C, h, w) in {0, 1}, prompt-major."""
    prompt_index: np.ndarray
    """int64 (N * samples,): the prompt each row comes from."""
    library_index: np.ndarray | None
    """int64 (N * samples,): the library latent each row started from (retrieve / refine), else None."""
    truncated: np.ndarray | None = None
    """bool (N,): prompts cut to the model's token limit (None where the caller did not tokenize)."""


PriorDraw = Callable[[np.ndarray | None, float], np.ndarray]
"""``draw_prior(start, strength)``: latents drawn from a cell prior with the call's temperature,
seed and guidance -> bits uint8 (N * samples, C, h, w), prompt-major; ``start`` (same shape) or
None: refine those latents, ``strength`` of their cells drawn again, instead of drawing anew."""


def generate_bits(mode: str, prediction: Prediction, *, samples: int = 1, temperature: float = 0.0, seed: int = 0,
                  strength: float = 0.5, library_signs: np.ndarray | None = None,
                  library_latents: Callable[[np.ndarray], np.ndarray] | None = None,
                  draw_prior: PriorDraw | None = None) -> Generation:  # fmt: skip
    """Latents for the N prompts of ``prediction`` in one of ``MODES`` -> ``Generation``.

    ``samples`` per prompt (retrieve: the ``samples`` nearest; generate / refine: ``samples``
    draws, all equal when ``temperature`` is 0). ``library_signs`` (M, K): the image codes of the
    library that retrieve and refine search, as ``code_signs``; ``library_latents(rows)``: its latents uint8
    (len(rows), C, h, w). ``draw_prior``: the cell prior's draw (``PriorDraw``), None without one.
    """
    check_mode(mode)
    _check_sampling(temperature, samples)
    n = len(prediction.bit_logits)
    latent_shape = prediction.bit_logits.shape[1:]
    prompt_index = np.repeat(np.arange(n, dtype=np.int64), samples)
    if mode == "generate":
        if draw_prior is not None:
            return Generation(draw_prior(None, 1.0), prompt_index, None)
        bits = sample_bits(prediction.bit_logits, temperature, seed, samples)  # (N, S, C, h, w)
        return Generation(bits.reshape(n * samples, *latent_shape), prompt_index, None)
    if library_signs is None or library_latents is None:
        raise ValueError(f"mode {mode!r} needs a latent library (the image latents to search)")
    if prediction.code_bits is None:
        raise ValueError(f"mode {mode!r} needs the text codes, and this text model has none")
    rows = nearest(prediction.code_bits, library_signs, k=samples).reshape(-1)  # (N * S,)
    start = np.asarray(library_latents(rows), dtype=np.uint8)  # (N * S, C, h, w)
    if mode == "retrieve":
        return Generation(start, prompt_index, rows)
    if draw_prior is not None:
        return Generation(draw_prior(start, strength), prompt_index, rows)
    target = sample_bits(prediction.bit_logits, temperature, seed, samples).reshape(n * samples, *latent_shape)
    logits = np.repeat(prediction.bit_logits, samples, axis=0)  # (N * S, C, h, w)
    return Generation(refine_bits(start, logits, strength, target), prompt_index, rows)


# ----------------------------------------------------------------------------- per-bit latents


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # no overflow for large |x|


def sample_bits(bit_logits: np.ndarray, temperature: float = 0.0, seed: int = 0, samples: int = 1) -> np.ndarray:
    """Bit logits (n, C, h, w) -> bits uint8 (n, samples, C, h, w).

    ``temperature == 0``: the argmax, repeated. Otherwise bit ~ Bernoulli(sigmoid(logit / T)),
    sample j's uniforms (C, h, w) from ``numpy.random.default_rng([seed, j])``, shared by the
    prompts: a prompt's samples do not depend on the other prompts of the call; a higher
    temperature gives more bits against the argmax.
    """
    _check_sampling(temperature, samples)
    logits = np.asarray(bit_logits, dtype=np.float32)
    if temperature == 0:
        return np.repeat((logits >= 0).astype(np.uint8)[:, None], samples, axis=1)
    p = _sigmoid(logits / np.float32(temperature))  # (n, C, h, w)
    out = np.empty((len(logits), samples, *logits.shape[1:]), dtype=np.uint8)
    for j in range(samples):
        u = np.random.default_rng([int(seed) & 0xFFFFFFFF, j]).random(logits.shape[1:], dtype=np.float32)
        out[:, j] = u[None] < p
    return out


def refine_bits(start_bits: np.ndarray, bit_logits: np.ndarray, strength: float = 0.5,
                target_bits: np.ndarray | None = None) -> np.ndarray:  # fmt: skip
    """Move ``start_bits`` (n, C, h, w) toward ``target_bits`` (default: argmax of the logits):
    flip the ``round(strength * disagreements)`` disagreeing bits with the largest ``|logit|``."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    start = np.asarray(start_bits).astype(bool)
    logits = np.asarray(bit_logits, dtype=np.float32)
    target = (logits >= 0) if target_bits is None else np.asarray(target_bits).astype(bool)
    if not start.shape == logits.shape == target.shape:
        raise ValueError(f"shapes differ: start {start.shape}, logits {logits.shape}, target {target.shape}")
    n = len(start)
    disagree = (start != target).reshape(n, -1)  # (n, bits)
    confidence = np.where(disagree, np.abs(logits).reshape(n, -1), -1.0)
    order = np.argsort(-confidence, axis=1, kind="stable")  # most confident disagreement first
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(order.shape[1])[None].repeat(n, 0), axis=1)
    n_flip = np.round(strength * disagree.sum(1)).astype(np.int64)  # (n,)
    flip = disagree & (rank < n_flip[:, None])
    return (start.reshape(n, -1) ^ flip).reshape(start.shape).astype(np.uint8)


# ----------------------------------------------------------------------------- Hamming search


def code_signs(bits: np.ndarray) -> np.ndarray:
    """Bits (n, ...) in {0, 1} -> float32 signs (n, K) in {-1, +1}, rows flattened: the form
    ``nearest`` searches (a library converts its codes once)."""
    bits = np.asarray(bits)
    bits = bits.reshape(len(bits), -1)
    if bits.size and (bits.min() < 0 or bits.max() > 1):
        raise ValueError("codes must be bits in {0, 1}")
    return bits.astype(np.float32) * 2 - 1


def hamming_distances(a: np.ndarray, b: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """Bits (n, K) x (m, K) -> int32 (n, m) Hamming distances (exact: a float32 matmul of signs,
    ``d = (K - <sa, sb>) / 2``, exact for K < 2**24), ``chunk`` rows of ``a`` at a time. Rows are
    flattened, so (n, C, h, w) works."""
    sa, sb = code_signs(a), code_signs(b)
    if sa.shape[1] != sb.shape[1]:
        raise ValueError(f"codes differ in length: {sa.shape[1]} vs {sb.shape[1]}")
    K = sa.shape[1]
    out = np.empty((sa.shape[0], sb.shape[0]), dtype=np.int32)
    for lo in range(0, sa.shape[0], chunk):
        out[lo : lo + chunk] = np.rint((K - sa[lo : lo + chunk] @ sb.T) / 2)  # (chunk, m)
    return out


def nearest(code_bits: np.ndarray, library_signs: np.ndarray, k: int = 1) -> np.ndarray:
    """Text codes (n, K) bits x library codes as signs (M, K) (``code_signs``) -> int64 (n, k): the
    k nearest library rows by Hamming distance, nearest first, ties broken by the lower index."""
    if not 1 <= k <= len(library_signs):
        raise ValueError(f"k must be in 1..{len(library_signs)} (the library size), got {k}")
    K = library_signs.shape[1]
    d = np.rint((K - code_signs(code_bits) @ library_signs.T) / 2)  # (n, M)
    return np.argsort(d, axis=1, kind="stable")[:, :k].astype(np.int64)


# ----------------------------------------------------------------------------- cell-prior draws


def cell_weights(c: int) -> np.ndarray:
    """int64 (C,): the value of each bit of a cell, bit 0 the most significant."""
    return 1 << np.arange(c - 1, -1, -1, dtype=np.int64)


def cell_values(cells: np.ndarray) -> np.ndarray:
    """Cells (..., C) in {0, 1} -> their values (...,) int64 in [0, 2^C), bit 0 the most significant."""
    cells = np.asarray(cells, dtype=np.int64)
    return (cells * cell_weights(cells.shape[-1])).sum(-1)


def cell_bits(values: np.ndarray, c: int) -> np.ndarray:
    """Cell values (...,) in [0, 2^C) -> their bits (..., C) uint8, bit 0 the most significant."""
    return ((np.asarray(values)[..., None] // cell_weights(c)) % 2).astype(np.uint8)


def cells_to_redraw(log_likelihoods: np.ndarray, strength: float) -> np.ndarray:
    """Log-likelihoods of the given cells (n, T) -> bool (n, T): the ``round(strength * T)`` least
    likely cells of each row (ties: the lower index first), those that refine draws again."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    scores = np.asarray(log_likelihoods)
    order = np.argsort(scores, axis=1, kind="stable")[:, : round(strength * scores.shape[1])]
    redraw = np.zeros(scores.shape, dtype=bool)
    np.put_along_axis(redraw, order, True, axis=1)
    return redraw


def prompt_keys(input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
    """A uint32 key per prompt: the CRC-32 of its real token ids (padding ignored)."""
    return np.array([zlib.crc32(np.ascontiguousarray(ids[m.astype(bool)], dtype=np.int64).tobytes())
                     for ids, m in zip(np.asarray(input_ids), np.asarray(attention_mask))], dtype=np.uint32)  # fmt: skip


def cell_uniforms(seed: int, samples: int, keys: np.ndarray, steps: int) -> np.ndarray:
    """The uniforms of the cell-prior draws -> float64 (N * samples, steps), prompt-major: row
    (i, j) from ``numpy.random.default_rng([seed, j, keys[i]])``. ``keys`` (N,): ``prompt_keys``
    of the prompts (equal keys: equal draws)."""
    return np.stack([np.random.default_rng([int(seed) & 0xFFFFFFFF, j, int(key)]).random(steps)
                     for key in np.asarray(keys, dtype=np.uint32) for j in range(samples)]).reshape(-1, steps)  # fmt: skip


def draw_cells(logits: np.ndarray, temperature: float, uniforms: np.ndarray) -> np.ndarray:
    """Cell logits (n, 2^C) -> values int64 (n,): argmax at temperature 0, else the inverse CDF of
    softmax(logits / temperature) at ``uniforms`` (n,)."""
    logits = np.asarray(logits, dtype=np.float32)
    if temperature == 0:
        return logits.argmax(1)
    z = logits if temperature == 1 else logits / np.float32(temperature)
    cdf = np.exp(z - z.max(1, keepdims=True)).cumsum(1)  # unnormalised: compare with u * total
    return np.minimum((cdf < uniforms[:, None] * cdf[:, -1:]).sum(1), logits.shape[1] - 1)


def cells_in_prior_order(bits: np.ndarray, patch: int = 1) -> np.ndarray:
    """Latent bits (N, C, h, w) -> cells (N, h*w, C) in a cell prior's order: the raster order of
    its ``patch x patch`` blocks, raster order inside each (``CellPrior.cells_of``)."""
    n, c, h, w = np.shape(bits)
    p = patch
    blocks = np.asarray(bits).reshape(n, c, h // p, p, w // p, p).transpose(0, 2, 4, 3, 5, 1)  # (N, h/p, w/p, p, p, C)
    return np.ascontiguousarray(blocks).reshape(n, h * w, c)


def grid_from_prior_order(cells: np.ndarray, h: int, w: int, patch: int = 1) -> np.ndarray:
    """Cells (N, h*w, C) in a cell prior's order -> latent bits (N, C, h, w) (``cells_in_prior_order``'s inverse)."""
    n, _, c = np.shape(cells)
    p = patch
    blocks = np.asarray(cells).reshape(n, h // p, w // p, p, p, c).transpose(0, 5, 1, 3, 2, 4)  # (N, C, h/p, p, w/p, p)
    return np.ascontiguousarray(blocks).reshape(n, c, h, w)


def sample_cells(step: Callable[[int, np.ndarray], np.ndarray], rows: int, bits_per_cell: int, steps: int,
                 temperature: float, uniforms: np.ndarray | None,
                 keep: tuple[np.ndarray, np.ndarray] | None = None, cells_per_step: int = 1) -> np.ndarray:  # fmt: skip
    """Draw ``rows`` latents from a cell prior, ``k = cells_per_step`` cells at a time -> cells uint8
    (rows, steps, C) in the prior's order (``cells_in_prior_order``); ``steps`` counts cells.

    ``step(s, previous)``: the logits float32 (rows, k * 2^C) of the k cells of block s given block
    s-1's cells (rows, k * C) uint8 (zeros at s = 0) and the blocks before it, which the caller
    caches. Cell t is ``draw_cells`` at ``uniforms[:, t]`` ((rows, steps), ``cell_uniforms``;
    unused at temperature 0). ``keep``: (values int64 (rows, steps), bool (rows, steps)): where
    True, the cell keeps that value instead of the draw (refine).
    """
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if temperature > 0 and (uniforms is None or np.shape(uniforms) != (rows, steps)):
        raise ValueError(f"sampling needs uniforms of shape ({rows}, {steps}) (cell_uniforms), "
                         f"got {None if uniforms is None else np.shape(uniforms)}")
    k = cells_per_step
    if k < 1 or steps % k:
        raise ValueError(f"cells_per_step {k} must divide the {steps} cells")
    cells = np.zeros((rows, steps, bits_per_cell), dtype=np.uint8)
    previous = np.zeros((rows, k * bits_per_cell), dtype=np.uint8)
    for s in range(steps // k):
        block = slice(s * k, (s + 1) * k)
        logits = np.asarray(step(s, previous)).reshape(rows * k, -1)  # (rows * k, 2^C)
        u = None if uniforms is None else uniforms[:, block].reshape(-1)
        value = draw_cells(logits, temperature, u).reshape(rows, k)
        if keep is not None:
            value = np.where(keep[1][:, block], keep[0][:, block], value)
        cells[:, block] = cell_bits(value, bits_per_cell)
        previous = cells[:, block].reshape(rows, -1)
    return cells
