"""Draw latents from the exported cell prior (``prior_context.onnx`` + ``prior.onnx``), cell by cell, with numpy. No torch.

    prior_tokens (N, L, d), attention_mask (N, L)        from text_to_latent.onnx
      -> prior_context.onnx, once:  context_keys_<i>, context_values_<i> (N*S, H, L, d/H) per block i,
                                    context_bias (N*S, 1, 1, L)
      keys_<i>, values_<i> = zeros (N*S, H, T/k, d/H)        k = patch^2 cells per step
      -> for t = 0 .. T/k - 1:  prior.onnx(block t-1's cells (N*S, k*C), t, keys, values, context)
                              -> cell_logits (N*S, k * 2^C), cell_keys_<i>, cell_values_<i> (N*S, H, 1, d/H)
                            keys_<i>[:, :, t], values_<i>[:, :, t] = cell_keys_<i>, cell_values_<i>
                            each of block t's k cells: value ~ softmax(logits / temperature)  (argmax at 0)
                            its C bits (bit 0 most significant)
      -> cells in prior order -> bits uint8 (N * S, C, h, w), prompt-major (``grid_from_prior_order``)

Each call computes one position against the cached keys and values of the cells before it and the
caption's keys and values, computed once (``CellPrior.step`` and ``CellPrior.context``), so a latent
costs one context call and T/k calls of one position each. The step's inputs and outputs stay bound
to the same arrays for all T calls (``PriorSession``): a call reads the caches where they are and
writes its outputs into place, with no feeds to convert and no outputs to allocate.

Refine (``start`` given, ``CellPrior.refine``): a first pass of T calls feeds the given latent's
cells and scores each, log p(cell_t | given cells < t, caption); the ``strength`` fraction least
likely (``cells_to_redraw``) is drawn again in the second pass, every other cell kept as given.

Classifier-free guidance (``guidance`` g != 1; priors trained with caption dropout, whose context
graph has an ``uncaptioned`` input): every row runs twice, with its caption and with the "no
caption" token, and cell t is drawn from ``u + g * (c - u)`` of the two rows' logits (``CellPrior.sample``).

Random draws: ``uniforms`` (N * samples, T), one per row and cell, from
``bitlatent.generation.cell_uniforms``; cell t of a row is ``draw_cells`` of its logits at the
row's uniform t: the torch path (``CellPrior.sample``) draws the same way, so both give the same
latents for a seed.
"""

from __future__ import annotations

import numpy as np

from bitlatent.generation import cell_values, cells_in_prior_order, cells_to_redraw, grid_from_prior_order, sample_cells

__all__ = ["PriorSession", "sample_prior_cells"]

CPU = "CPUExecutionProvider"


class PriorSession:
    """``prior_context.onnx`` (``context_session``) run once for ``rows`` captions, then
    ``prior.onnx`` (``step_session``) one cell at a time on their caches: ``step`` gives cell t's
    logits. ``tokens`` (rows, L, d) float32, ``mask`` (rows, L) int64, ``uncaptioned`` (rows,)
    bool: rows that read the "no caption" token instead (None: none; needs a prior trained with
    caption dropout otherwise).

    Every input and output of the step is bound once to an array of this object (ONNX Runtime's
    I/O binding): ``step`` writes the previous cell and t into theirs, runs, and copies the new keys
    and values into slot t of the caches. On the CPU the bound arrays are read in place; another
    provider copies an input when it is bound, so there every input is bound again before each run.
    """

    def __init__(self, context_session, step_session, tokens: np.ndarray, mask: np.ndarray,
                 uncaptioned: np.ndarray | None = None):  # fmt: skip
        import onnxruntime as ort

        self.session = step_session
        rows = len(tokens)
        feeds = {"prior_tokens": np.ascontiguousarray(tokens, dtype=np.float32),
                 "attention_mask": np.ascontiguousarray(mask, dtype=np.int64)}  # fmt: skip
        if "uncaptioned" in [i.name for i in context_session.get_inputs()]:
            feeds["uncaptioned"] = np.zeros(rows, bool) if uncaptioned is None else np.asarray(uncaptioned, bool)
        elif uncaptioned is not None and np.any(uncaptioned):
            raise ValueError("guidance needs a prior trained with caption dropout (prior_caption_dropout > 0)")
        context_names = [o.name for o in context_session.get_outputs()]
        context = dict(zip(context_names, context_session.run(context_names, feeds)))
        step_inputs = {i.name: i.shape for i in step_session.get_inputs()}
        step_outputs = {o.name: o.shape for o in step_session.get_outputs()}
        layers = sum(name.startswith("keys_") for name in step_inputs)
        # each family stacked over the blocks, block i's part bound as keys_<i> (cell_keys_<i>): one
        # copy per family stores a step's keys / values in their caches
        self.caches = {f: np.zeros((layers, *_shape(step_inputs[f"{f}_0"], rows)), np.float32)
                       for f in ("keys", "values")}  # (layers, rows, H, T, d/H)  # fmt: skip
        self.new = {f: np.zeros((layers, *_shape(step_outputs[f"cell_{f}_0"], rows)), np.float32)
                    for f in ("keys", "values")}  # (layers, rows, H, 1, d/H)  # fmt: skip
        self.slots = self.caches["keys"].shape[3]  # S = T / k steps
        self.previous = np.zeros(_shape(step_inputs["previous_cell"], rows), np.uint8)  # (rows, k*C)
        self.t = np.zeros(1, np.int64)
        self.logits = np.zeros(_shape(step_outputs["cell_logits"], rows), np.float32)  # (rows, k * 2^C)
        self.inputs = {**context, "previous_cell": self.previous, "step": self.t,
                       **{f"{f}_{i}": cache[i] for f, cache in self.caches.items() for i in range(layers)}}  # fmt: skip
        outputs = {"cell_logits": self.logits, **{f"cell_{f}_{i}": new[i] for f, new in self.new.items() for i in range(layers)}}
        self.copies_inputs = step_session.get_providers()[0] != CPU
        self.binding = step_session.io_binding()
        self._bind_inputs()
        for name, array in outputs.items():
            self.binding.bind_ortvalue_output(name, ort.OrtValue.ortvalue_from_numpy(array))

    def _bind_inputs(self) -> None:
        for name, array in self.inputs.items():
            self.binding.bind_cpu_input(name, array)  # on the CPU: the array itself, not a copy

    def reset(self) -> None:
        """Empty caches, for a new pass over the cells."""
        for cache in self.caches.values():
            cache.fill(0)

    def step(self, t: int, previous: np.ndarray) -> np.ndarray:
        """Block t's cell logits (rows, k * 2^C), given block t-1's cells (rows, k*C) (or (n, k*C)
        with rows a multiple of n: repeated, for the guided rows) and the steps cached before it.
        The array is this object's output buffer: the next ``step`` overwrites it."""
        self.previous.reshape(-1, *np.shape(previous))[:] = previous
        self.t[0] = t
        if self.copies_inputs:
            self._bind_inputs()
        self.session.run_with_iobinding(self.binding)
        for family, cache in self.caches.items():
            cache[:, :, :, t : t + 1] = self.new[family]
        return self.logits


def _shape(dims: list, rows: int) -> tuple[int, ...]:
    """A graph input's or output's shape with its batch dim (the one symbolic dim left) set to ``rows``."""
    return tuple(d if isinstance(d, int) else rows for d in dims)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(1, keepdims=True)
    return z - np.log(np.exp(z).sum(1, keepdims=True))


def sample_prior_cells(context_session, step_session, prior_tokens: np.ndarray, attention_mask: np.ndarray,
                       latent_shape: tuple[int, int, int], temperature: float = 1.0,
                       uniforms: np.ndarray | None = None, samples: int = 1, guidance: float = 1.0,
                       start: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:  # fmt: skip
    """Latents drawn from the exported prior (ONNX Runtime sessions of ``prior_context.onnx`` and
    ``prior.onnx``) for N captions -> bits uint8 (N * samples, C, h, w), prompt-major. Tokens past
    the longest prompt (right padding) are left out. ``uniforms`` (N * samples, h * w): the draws'
    uniforms (``cell_uniforms``; unused at temperature 0). ``guidance``: classifier-free guidance
    weight (1: none). ``start`` (N * samples, C, h, w) bits, prompt-major: refine them instead, the
    fraction ``strength`` least likely of their cells drawn again."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    c, h, w = latent_shape
    n, cells = len(prior_tokens), h * w
    length = max(int(np.asarray(attention_mask).sum(1).max(initial=0)), 1)  # the longest prompt's tokens
    tokens = np.repeat(np.asarray(prior_tokens, dtype=np.float32)[:, :length], samples, axis=0)  # (N*S, L, d)
    mask = np.repeat(np.asarray(attention_mask, dtype=np.int64)[:, :length], samples, axis=0)  # (N*S, L)
    rows = len(mask)
    guided = guidance != 1.0
    if guided:  # rows..: the same captions, read as "no caption"
        tokens, mask = np.concatenate([tokens, tokens]), np.concatenate([mask, mask])
    prior = PriorSession(context_session, step_session, tokens, mask, np.arange(len(mask)) >= rows if guided else None)
    k = prior.previous.shape[1] // c  # cells per step
    patch = int(round(k**0.5))
    if patch * patch != k or prior.slots * k != cells:
        raise ValueError(f"prior.onnx draws {k} cells in each of {prior.slots} steps, the latent has {cells} cells")
    g = np.float32(guidance)

    def step(t: int, previous: np.ndarray) -> np.ndarray:  # block t's (guided) logits (N*S, k * 2^C)
        logits = prior.step(t, previous)
        return logits[rows:] + g * (logits[:rows] - logits[rows:]) if guided else logits.copy()

    keep = None
    if start is not None:  # score the given cells, teacher-forced, and keep all but the least likely
        given = cells_in_prior_order(np.asarray(start, dtype=np.uint8), patch)  # (N*S, T, C)
        given_values = cell_values(given)  # (N*S, T)
        scores = np.empty(given_values.shape, np.float32)  # log p(given cell | given blocks before, caption)
        previous = np.zeros((rows, k * c), np.uint8)
        for t in range(prior.slots):
            block = slice(t * k, (t + 1) * k)
            log_p = _log_softmax(step(t, previous).reshape(rows * k, -1)).reshape(rows, k, -1)  # (N*S, k, 2^C)
            scores[:, block] = np.take_along_axis(log_p, given_values[:, block, None], 2)[..., 0]
            previous = np.ascontiguousarray(given[:, block].reshape(rows, -1))
        keep = (given_values, ~cells_to_redraw(scores, strength))
        prior.reset()
    drawn = sample_cells(step, rows, c, cells, temperature, uniforms, keep, k)  # (N*S, T, C), prior order
    return grid_from_prior_order(drawn, h, w, patch)
