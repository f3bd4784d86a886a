"""Draw latents from the exported cell prior (``prior.onnx``), cell by cell, with numpy. No torch.

    prior_tokens (N, L, d), attention_mask (N, L)        from text_to_latent.onnx
      keys, values = zeros (layers, N*S, H, T, d/H)
      -> for t = 0 .. T-1:  prior.onnx(tokens, mask, cells[:, t-1], t, keys, values)
                              -> cell_logits (N*S, 2^C), cell_keys, cell_values (layers, N*S, H, d/H)
                            keys[:, :, :, t], values[:, :, :, t] = cell_keys, cell_values
                            value_t ~ softmax(logits / temperature)      (argmax at temperature 0)
                            cells[:, t] = the C bits of value_t          (bit 0 most significant)
      -> bits uint8 (N * S, C, h, w), prompt-major

Each call computes one position against the cached keys and values of the cells before it
(``CellPrior.step``), so a latent costs T calls of one position each.

Refine (``start`` given, ``CellPrior.refine``): a first pass of T calls feeds the given latent's
cells and scores each, log p(cell_t | given cells < t, caption); the ``strength`` fraction least
likely (``cells_to_redraw``) is drawn again in the second pass, every other cell kept as given.

Classifier-free guidance (``guidance`` g != 1; priors trained with caption dropout, whose graph has
an ``uncaptioned`` input): every row runs twice, with its caption and with the "no caption" token,
and cell t is drawn from ``u + g * (c - u)`` of the two rows' logits (``CellPrior.sample``).

Random draws: ``uniforms`` (N * samples, T), one per row and cell, from
``bitlatent.generation.cell_uniforms``; cell t of a row is ``draw_cells`` of its logits at the
row's uniform t: the torch path (``CellPrior.sample``) draws the same way, so both give the same
latents for a seed.
"""

from __future__ import annotations

import numpy as np

from bitlatent.generation import cell_values, cells_to_redraw, sample_cells

__all__ = ["sample_prior_cells"]


class _PriorSteps:
    """``prior.onnx`` called one cell at a time for ``rows`` latents, with its caches and, under
    guidance, every row doubled (rows..: no caption): ``step`` gives cell t's guided logits."""

    def __init__(self, session, tokens: np.ndarray, mask: np.ndarray, steps: int, guidance: float):
        self.session, self.guidance, self.rows = session, np.float32(guidance), len(tokens)
        self.guided = guidance != 1.0
        names = [i.name for i in session.get_inputs()]
        self.extra: dict[str, np.ndarray] = {}
        if self.guided:
            if "uncaptioned" not in names:
                raise ValueError("guidance needs a prior trained with caption dropout (prior_caption_dropout > 0)")
            tokens, mask = np.concatenate([tokens, tokens]), np.concatenate([mask, mask])  # rows..: no caption
            self.extra["uncaptioned"] = np.arange(2 * self.rows) >= self.rows
        elif "uncaptioned" in names:
            self.extra["uncaptioned"] = np.zeros(self.rows, dtype=bool)
        self.tokens, self.mask = tokens, mask
        layers, _, heads, slots, head_width = session.get_inputs()[4].shape  # keys: (layers, batch, H, T, d/H)
        if slots != steps:
            raise ValueError(f"prior.onnx caches {slots} cells, the latent has {steps}")
        self.cache_shape = (layers, len(mask), heads, slots, head_width)
        self.reset()

    def reset(self) -> None:
        self.keys = np.zeros(self.cache_shape, np.float32)
        self.values = np.zeros_like(self.keys)

    def step(self, t: int, previous: np.ndarray) -> np.ndarray:
        """Cell t's logits (rows, 2^C), given cell t-1 (rows, C) and the cells cached before it."""
        previous = np.ascontiguousarray(previous)
        feeds = {"prior_tokens": self.tokens, "attention_mask": self.mask, "step": np.array([t], dtype=np.int64),
                 "previous_cell": np.concatenate([previous, previous]) if self.guided else previous,
                 "keys": self.keys, "values": self.values, **self.extra}  # fmt: skip
        logits, self.keys[:, :, :, t], self.values[:, :, :, t] = self.session.run(["cell_logits", "cell_keys", "cell_values"], feeds)
        if self.guided:
            logits = logits[self.rows :] + self.guidance * (logits[: self.rows] - logits[self.rows :])
        return logits


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def sample_prior_cells(session, prior_tokens: np.ndarray, attention_mask: np.ndarray,
                       latent_shape: tuple[int, int, int], temperature: float = 1.0,
                       uniforms: np.ndarray | None = None, samples: int = 1, guidance: float = 1.0,
                       start: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:  # fmt: skip
    """Latents drawn from ``session`` (an ONNX Runtime session of ``prior.onnx``) for N captions ->
    bits uint8 (N * samples, C, h, w), prompt-major. ``uniforms`` (N * samples, h * w): the draws'
    uniforms (``cell_uniforms``; unused at temperature 0). ``guidance``: classifier-free guidance
    weight (1: none). ``start`` (N * samples, C, h, w) bits, prompt-major: refine them instead, the
    fraction ``strength`` least likely of their cells drawn again."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    c, h, w = latent_shape
    n, steps = len(prior_tokens), h * w
    tokens = np.repeat(np.ascontiguousarray(prior_tokens, dtype=np.float32), samples, axis=0)  # (N*S, L, d)
    mask = np.repeat(np.ascontiguousarray(attention_mask, dtype=np.int64), samples, axis=0)  # (N*S, L)
    prior = _PriorSteps(session, tokens, mask, steps, guidance)
    keep = None
    if start is not None:  # score the given cells, teacher-forced, and keep all but the least likely
        given = np.asarray(start, dtype=np.uint8).reshape(n * samples, c, steps).transpose(0, 2, 1)  # (N*S, T, C)
        given = np.ascontiguousarray(given)
        given_values = cell_values(given)  # (N*S, T)
        scores = np.empty(given_values.shape, np.float32)  # log p(given cell t | given cells < t, caption)
        for t in range(steps):
            log_p = _log_softmax(prior.step(t, given[:, t - 1]))  # (N*S, 2^C)
            scores[:, t] = np.take_along_axis(log_p, given_values[:, t, None], 1)[:, 0]
        keep = (given_values, ~cells_to_redraw(scores, strength))
        prior.reset()
    cells = sample_cells(prior.step, n * samples, c, steps, temperature, uniforms, keep)  # (N*S, T, C)
    return np.ascontiguousarray(cells.transpose(0, 2, 1).reshape(n * samples, c, h, w))
