"""An autoregressive prior over a latent's cells, given a caption: p(cell_t | cells before t, text).

    token states (B, L, 384) from MiniLM, mask (B, L)
      -> LayerNorm + Linear                                   tokens  (B, L, d)
    latent bits (B, C, h, w) -> cells in prior order           (B, T = h*w, C) as ±1: raster order
                                                               of p x p blocks, raster order inside
      -> a block's k = p^2 cells per position                  (B, S = T/k, k*C)
      -> shifted right by one (a learned start vector first), Linear(k*C, d) + position   (B, S, d)
      -> N blocks:  x += causal SelfAttention(x)      block s sees blocks < s only
                    x += CrossAttention(x -> tokens)
                    x += MLP(x)
      -> LayerNorm + Linear(d, k * 2^C)                        cell logits (B, T, 2^C): one class per
                                                               value of a cell's C bits (bit 0 = MSB)

With ``patch`` p = 1 a position is one cell. With p = 2 the prior takes a quarter of the steps (its
cost does not grow when the grid's side doubles), and a block's four cells are drawn side by side,
each from its own categorical given the blocks before; later blocks follow what was drawn.

A cell's C bits are one categorical variable (2^C values, C <= 10), so they are drawn jointly:
bits drawn one by one could mix two pictures inside a cell. Training is teacher-forced (one pass:
every cell's distribution given the true cells before it, cross-entropy). Sampling draws the
cells one after another (``sample``, one ``step`` per cell with cached keys and values) with a
temperature, by ``bitlatent.generation.sample_cells`` with the uniforms of a seed: the same draws
as the exported prior's in the ONNX path. What a step reads of the caption (every block's
cross-attention keys and values) is computed once per caption (``context``), not at every cell.
Unlike the per-bit predictor of ``model.py``, whose logits are the average over every latent a
caption allows (which decodes to grey), a sample commits to one background and one place for
each object, and later cells follow it.

Refining (``refine``) starts from a given latent (a retrieved one): the given cells are scored
teacher-forced, log p(cell_t | given cells < t, text), the ``strength`` fraction least likely
given the caption is marked, and the latent is drawn again cell by cell with every unmarked cell
kept as given and every marked one drawn from the prior, given the cells before it as they now
stand. Strength 0 returns the given latent, 1 is a plain ``sample`` (the same draws for the same uniforms).
"""

from __future__ import annotations

from dataclasses import dataclass

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlatent.generation import cell_weights, cells_to_redraw, sample_cells

from .layers import Attention, additive_mask, mlp

__all__ = ["CellPriorConfig", "CellPrior", "cells_of", "grid_of", "cell_values", "sample_prior"]

MAX_BITS_PER_CELL = 10


@dataclass
class CellPriorConfig:
    """Architecture of the cell prior; ``TextToLatentConfig.prior_config()`` makes it (the latent
    fields must match the decoder's spec)."""

    latent_h: int = 16
    """Latent grid height in cells."""
    latent_w: int = 16
    """Latent grid width in cells."""
    bits_per_cell: int = 8
    """``C``, bits per latent cell."""
    text_dim: int = 384
    """Width of the text encoder's token states (MiniLM: 384)."""
    width: int = 128
    """``d``: width of every block."""
    heads: int = 4
    """Attention heads; ``width`` must be divisible by it."""
    layers: int = 3
    """Blocks of (causal self-attention, cross-attention to the caption, MLP)."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP, as a multiple of ``width``."""
    dropout: float = 0.1
    """Dropout on the MLP outputs while training."""
    patch: int = 1
    """Each position of the prior draws a ``patch x patch`` block of cells (``h * w / patch**2``
    steps): finer cells at the cost of coarser ones. Must divide the grid."""
    caption_dropout: float = 0.0
    """Fraction of training captions replaced by a learned "no caption" token, so the prior also
    learns p(cells) without text: what classifier-free guidance (``guidance`` > 1 when sampling)
    steers away from. 0: no such token (and no guidance)."""

    def __post_init__(self) -> None:
        for name in ("latent_h", "latent_w", "bits_per_cell", "text_dim", "width", "heads", "layers", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"CellPriorConfig.{name} must be a positive int, got {value!r}")
        if self.bits_per_cell > MAX_BITS_PER_CELL:
            raise ValueError(f"the cell prior models a cell's bits jointly (2^C values): C must be <= "
                             f"{MAX_BITS_PER_CELL}, got {self.bits_per_cell}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not isinstance(self.patch, int) or self.patch < 1 or self.latent_h % self.patch or self.latent_w % self.patch:
            raise ValueError(f"CellPriorConfig.patch {self.patch!r} must divide the latent grid "
                             f"{self.latent_h} x {self.latent_w}")
        if not all(0.0 <= p < 1.0 for p in (self.dropout, self.caption_dropout)):
            raise ValueError("dropout and caption_dropout must be in [0, 1)")

    @property
    def num_cells(self) -> int:
        return self.latent_h * self.latent_w

    @property
    def cells_per_step(self) -> int:
        """``k = patch**2``: the cells one position draws."""
        return self.patch**2

    @property
    def num_steps(self) -> int:
        """Positions of the prior: ``h * w / patch**2``."""
        return self.num_cells // self.cells_per_step


def cells_of(bits: torch.Tensor, patch: int = 1) -> torch.Tensor:
    """Latent bits (B, C, h, w) -> cells in prior order (B, h*w, C): the raster order of the
    ``patch x patch`` blocks, raster order inside each (``generation.cells_in_prior_order``)."""
    b, c, h, w = bits.shape
    p = patch
    blocks = bits.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)  # (B, h/p, w/p, p, p, C)
    return blocks.reshape(b, h * w, c)


def grid_of(cells: torch.Tensor, h: int, w: int, patch: int = 1) -> torch.Tensor:
    """Cells in prior order (B, h*w, C) -> the grid (B, C, h, w) (``cells_of``'s inverse)."""
    b, _, c = cells.shape
    p = patch
    blocks = cells.reshape(b, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)  # (B, C, h/p, p, w/p, p)
    return blocks.reshape(b, c, h, w)


def cell_values(cells: torch.Tensor) -> torch.Tensor:
    """Cells (..., C) in {0, 1} -> their values (...,) int64 in [0, 2^C) (``generation.cell_weights``)."""
    return (cells.long() * torch.from_numpy(cell_weights(cells.shape[-1])).to(cells.device)).sum(-1)


class CausalSelfAttention(nn.Module):
    """(B, T, d) -> (B, T, d); position t attends to positions <= t. No dropout on the attention
    weights, so ``scaled_dot_product_attention`` can use its fused kernel."""

    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.qkv(x).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 3 x (B, H, T, d/H)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).flatten(2))  # (B, T, d)

    def step(self, x: torch.Tensor, bias: torch.Tensor, keys: torch.Tensor, values: torch.Tensor):
        """One position t: x (B, d), ``bias`` (1, 1, 1, T) 0 at slots < t and masked from t on
        (``additive_mask``), the keys and values of the positions before (B, H, T, d/H; slots >= t
        unused) -> (B, d) and this position's key and value (B, H, 1, d/H), for the caller to store
        in slot t. The caches are only read: the graph copies nothing of their size.
        One position as (B, d): the linear layers export as single Gemm nodes, and (B, d) and
        (B, H, 1, d/H) are the same memory, so plain reshapes with constant shapes, no transposes,
        keep the exported graph small (it runs once per cell: every node counts)."""
        d = x.shape[-1]
        q, k, v = self.qkv(x).reshape(-1, 3 * self.heads, 1, d // self.heads).split(self.heads, dim=1)  # 3 x (B, H, 1, d/H)
        # scores over the cached slots and over this position, side by side: concatenating the
        # caches with k / v instead would copy both caches on every step
        scale = (d // self.heads) ** -0.5
        cached = torch.matmul(q, keys.transpose(-1, -2)) * scale + bias  # (B, H, 1, T)
        own = torch.matmul(q, k.transpose(-1, -2)) * scale  # (B, H, 1, 1)
        weights = torch.softmax(torch.cat([cached, own], -1), dim=-1)  # (B, H, 1, T + 1)
        y = torch.matmul(weights[..., :-1], values) + weights[..., -1:] * v  # (B, H, 1, d/H)
        return self.proj(y.reshape(-1, d)), k, v  # (B, d), 2 x (B, H, 1, d/H)


def fusable_gelu(x: torch.Tensor) -> torch.Tensor:
    """GELU (erf form, ``nn.GELU``'s function, to float rounding) written as ``(x * 0.5) * (1 +
    erf(x / sqrt 2))``: ONNX Runtime fuses that pattern of the exported graph into one Gelu node,
    while ``nn.GELU`` exports as five nodes in an order it does not fuse. For ``step``, whose graph
    runs once per cell and is bound by its number of nodes."""
    return (x * 0.5) * (1.0 + torch.erf(x / math.sqrt(2.0)))


class PriorBlock(nn.Module):
    """Pre-norm residual block: causal self-attention, cross-attention to the caption, MLP."""

    def __init__(self, cfg: CellPriorConfig):
        super().__init__()
        d = cfg.width
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = CausalSelfAttention(d, cfg.heads)
        self.norm_cross = nn.LayerNorm(d)
        self.cross = Attention(d, cfg.heads, dropout=0.0)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = mlp(d, cfg.mlp_ratio, cfg.dropout)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.self_attn(self.norm_self(x))  # (B, T, d)
        x = x + self.cross(self.norm_cross(x), tokens, mask)
        return x + self.mlp(self.norm_mlp(x))

    def step(self, x: torch.Tensor, cell_bias: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
             context_keys: torch.Tensor, context_values: torch.Tensor, context_bias: torch.Tensor):  # fmt: skip
        """``forward`` for one position x (B, d) with this block's cached keys / values (B, H, T, d/H)
        (``CausalSelfAttention.step``) and the caption's cross-attention keys / values (B, H, L, d/H)
        (``CellPrior.context``); the masks come as additive biases: ``cell_bias`` (1, 1, 1, T),
        ``context_bias`` (B, 1, 1, L). The MLP is ``mlp`` (Linear, GELU, Linear, Dropout: identity
        in eval) with its GELU as ``fusable_gelu``."""
        y, key, value = self.self_attn.step(self.norm_self(x), cell_bias, keys, values)
        x = x + y
        x = x + self.cross.one_query(self.norm_cross(x), context_keys, context_values, context_bias)  # (B, d)
        linear_in, _, linear_out, _ = self.mlp
        return x + linear_out(fusable_gelu(linear_in(self.norm_mlp(x)))), key, value


class CellPrior(nn.Module):
    """Token states (B, L, text_dim) + mask (B, L) + latent bits (B, C, h, w) -> teacher-forced cell
    logits (B, h*w, 2^C) in prior order: a cell's distribution depends on the caption and on the
    blocks of cells before its own only."""

    def __init__(self, config: CellPriorConfig):
        super().__init__()
        self.config = cfg = config
        d = cfg.width
        self.token_norm = nn.LayerNorm(cfg.text_dim)
        self.token_proj = nn.Linear(cfg.text_dim, d)
        self.start = nn.Parameter(torch.randn(d) * 0.02)  # stands in for "the cell before the first"
        self.cell_in = nn.Linear(cfg.cells_per_step * cfg.bits_per_cell, d)  # a block's k cells
        self.position = nn.Parameter(torch.randn(cfg.num_steps, d) * 0.02)  # (S, d)
        self.blocks = nn.ModuleList(PriorBlock(cfg) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, cfg.cells_per_step * 2**cfg.bits_per_cell)  # k cells' logits
        # the "no caption" token (caption dropout, classifier-free guidance), in projected token space
        self.null = nn.Parameter(torch.randn(d) * 0.02) if cfg.caption_dropout > 0 else None

    def encode_text(self, states: torch.Tensor) -> torch.Tensor:
        return self.token_proj(self.token_norm(states))  # (B, L, d)

    def without_caption(self, tokens: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor | None = None):
        """Projected tokens (B, L, d) and mask (B, L) with ``rows`` (B,) bool (all when None)
        replaced by the "no caption" token: the null vector at position 0, every other token masked."""
        if self.null is None:
            raise ValueError("this prior has no 'no caption' token: train it with caption_dropout > 0")
        b, length = mask.shape
        rows = torch.ones(b, dtype=torch.bool, device=mask.device) if rows is None else rows
        first = (torch.arange(length, device=mask.device) == 0).expand(b, -1)  # (B, L)
        tokens = torch.where(rows[:, None, None], self.null.to(tokens.dtype).expand_as(tokens), tokens)
        rows = rows[:, None]
        return tokens, (rows & first) | (~rows & mask.bool())  # not torch.where: ONNX Runtime has no bool Where

    def cell_logits(self, tokens: torch.Tensor, mask: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """Projected tokens (B, L, d), mask (B, L), the first n cells (B, n, C) in {0, 1} in prior
        order, n a multiple of k = patch**2, k <= n <= T -> logits (B, n, 2^C) of the values of cells
        0..n-1, where a cell sees the blocks before its own only (the last block's own values are
        never read: to get block s's distribution, pass the s blocks drawn so far and any
        placeholder after them)."""
        b, n, c = cells.shape
        k = self.config.cells_per_step
        s = n // k
        start = self.start.expand(b, 1, -1)  # (B, 1, d)
        blocks = cells.reshape(b, s, k * c).float() * 2 - 1  # (B, s, k*C) as ±1
        x = torch.cat([start, self.cell_in(blocks)], 1)[:, :s] + self.position[:s]  # (B, s, d): shifted
        for block in self.blocks:
            x = block(x, tokens, mask.bool())
        return self.head(self.out_norm(x)).reshape(b, n, -1)  # (B, s, k * 2^C) -> (B, n, 2^C)

    def cells_of(self, bits: torch.Tensor) -> torch.Tensor:
        """Latent bits (B, C, h, w) -> cells in this prior's order (B, T, C) (``cells_of``)."""
        return cells_of(bits, self.config.patch)

    def grid_of(self, cells: torch.Tensor) -> torch.Tensor:
        """Cells in this prior's order (B, T, C) -> latent bits (B, C, h, w) (``grid_of``)."""
        cfg = self.config
        return grid_of(cells, cfg.latent_h, cfg.latent_w, cfg.patch)

    def forward(self, states: torch.Tensor, mask: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        return self.cell_logits(self.encode_text(states), mask, self.cells_of(bits))  # (B, T, 2^C)

    def context(self, tokens: torch.Tensor, mask: torch.Tensor):
        """What ``step`` reads of the caption, computed once per caption rather than at every cell:
        projected tokens (B, L, d), mask (B, L) -> (keys, values, bias): every block's
        cross-attention keys and values, lists of ``layers`` (B, H, L, d/H), and the mask as an
        additive bias (B, 1, 1, L). The ONNX export ``prior_context.onnx`` is this method."""
        pairs = [block.cross.keys_values(tokens) for block in self.blocks]
        return [k for k, _ in pairs], [v for _, v in pairs], additive_mask(mask.bool())[:, None, None, :]

    def empty_cache(self, batch: int, device: torch.device | str = "cpu") -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Zero key and value caches for ``step``: lists of ``layers`` (B, H, T, d/H), one per block
        (one tensor per block: the exported step reads each block's without copying it out of a stack)."""
        cfg = self.config
        shape = (batch, cfg.heads, cfg.num_steps, cfg.width // cfg.heads)
        return ([torch.zeros(shape, device=device) for _ in range(cfg.layers)],
                [torch.zeros(shape, device=device) for _ in range(cfg.layers)])  # fmt: skip

    def step(self, previous: torch.Tensor, t: torch.Tensor, keys: list[torch.Tensor], values: list[torch.Tensor],
             context: tuple[list[torch.Tensor], list[torch.Tensor], torch.Tensor]):  # fmt: skip
        """Block t's cell logits from the block before it, with cached keys and values: block t-1's
        k = patch**2 cells (B, k*C) in {0, 1} (ignored at t = 0, where the start vector stands in),
        t a (1,) int64 tensor, caches (``empty_cache``: per block (B, H, S, d/H)) holding positions
        0..t-1 in slots 0..t-1, the caption's ``context`` -> logits (B, k * 2^C) (block t's rows of
        ``cell_logits``, cell after cell) and position t's keys and values (lists of ``layers``
        (B, H, 1, d/H)): store them in slot t before the next step (``store_step``). The ONNX
        export (``prior.onnx``) is this method: one call per block, each the cost of one position
        rather than of the whole prefix."""
        context_keys, context_values, context_bias = context
        embedded = torch.where(t == 0, self.start, self.cell_in(previous.float() * 2 - 1))  # (B, d)
        x = embedded + self.position.index_select(0, t)  # (B, d): one position
        slots = torch.arange(self.config.num_steps, device=x.device).reshape(1, 1, 1, -1)  # (1, 1, 1, S)
        cell_bias = additive_mask(slots < t)  # (1, 1, 1, S): the positions before t
        new_keys, new_values = [], []
        for block, k, v, ck, cv in zip(self.blocks, keys, values, context_keys, context_values):
            x, k, v = block.step(x, cell_bias, k, v, ck, cv, context_bias)
            new_keys.append(k)
            new_values.append(v)
        return self.head(self.out_norm(x)), new_keys, new_values  # (B, k * 2^C), 2 x layers (B, H, 1, d/H)

    @staticmethod
    def store_step(keys: list[torch.Tensor], values: list[torch.Tensor], t: int, key: list[torch.Tensor],
                   value: list[torch.Tensor]) -> None:  # fmt: skip
        """Write ``step``'s cell-t keys and values (per block (B, H, 1, d/H)) into slot t of the caches, in place."""
        for cache, new in zip([*keys, *values], [*key, *value]):
            cache[:, :, t : t + 1] = new

    def loss(self, states: torch.Tensor, mask: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy of the true cells (nats per cell; / C / ln 2 for bits per bit). While
        training, a ``caption_dropout`` fraction of the captions is replaced by the "no caption" token."""
        tokens, mask = self.encode_text(states), mask.bool()
        if self.training and self.null is not None:
            dropped = torch.rand(mask.shape[0], device=mask.device) < self.config.caption_dropout
            tokens, mask = self.without_caption(tokens, mask, dropped)
        cells = self.cells_of(bits)  # (B, T, C)
        logits = self.cell_logits(tokens, mask, cells)  # (B, T, 2^C)
        return F.cross_entropy(logits.flatten(0, 1), cell_values(cells).flatten())

    def _guided(self, states: torch.Tensor, mask: torch.Tensor, guidance: float):
        """Projected tokens and mask for ``b`` captions; with guidance != 1, doubled: rows b.. are the
        same rows without their captions (classifier-free guidance)."""
        tokens, mask = self.encode_text(states), mask.bool()
        if guidance != 1.0:
            b = states.shape[0]
            tokens, mask = torch.cat([tokens, tokens]), torch.cat([mask, mask])
            tokens, mask = self.without_caption(tokens, mask, torch.arange(2 * b, device=mask.device) >= b)
        return tokens, mask

    @staticmethod
    def _combine(logits: torch.Tensor, b: int, guidance: float) -> torch.Tensor:
        """Logits of the doubled rows -> ``u + g * (c - u)`` (c given the caption, u without); as is when g == 1."""
        logits = logits.float()
        return logits if guidance == 1.0 else logits[b:] + guidance * (logits[:b] - logits[b:])

    @torch.no_grad()
    def cell_log_likelihoods(self, states: torch.Tensor, mask: torch.Tensor, bits: torch.Tensor,
                             guidance: float = 1.0) -> torch.Tensor:  # fmt: skip
        """Latents (B, C, h, w) in {0, 1} -> (B, h*w) log p(cell | the blocks before its own, caption)
        in prior order, teacher-forced in one pass, with the (guided) distribution that ``sample`` draws from."""
        b = states.shape[0]
        tokens, mask = self._guided(states, mask, guidance)
        cells = self.cells_of(bits)  # (B, T, C)
        logits = self.cell_logits(tokens, mask, cells.repeat(2, 1, 1) if guidance != 1.0 else cells)  # (B or 2B, T, 2^C)
        log_p = torch.log_softmax(self._combine(logits, b, guidance), -1)  # (B, T, 2^C)
        return log_p.gather(2, cell_values(cells)[..., None])[..., 0]

    @torch.no_grad()
    def sample(self, states: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0,
               uniforms: np.ndarray | None = None, guidance: float = 1.0,
               keep: tuple[np.ndarray, np.ndarray] | None = None) -> torch.Tensor:  # fmt: skip
        """Draw latents block by block -> bits uint8 (B, C, h, w). ``temperature`` 0: each cell's most
        likely value given the blocks drawn before it (greedy); > 0: softmax(logits / T) at
        ``uniforms`` (B, h*w) in prior order (``generation.cell_uniforms``; on the CPU, so the same
        latents on any device). ``guidance`` g != 1 (classifier-free guidance; needs the "no caption" token): each
        step's logits are ``u + g * (c - u)``, c given the caption, u given no caption. ``keep``:
        (values int64 (B, h*w), bool (B, h*w)) in prior order, cells that keep those values where
        True instead of being drawn (``refine``)."""
        cfg = self.config
        b, device = states.shape[0], states.device
        tokens, mask = self._guided(states, mask, guidance)
        context = self.context(tokens, mask)
        keys, values = self.empty_cache(len(mask), device)

        def step(t: int, previous: np.ndarray) -> np.ndarray:  # block t's logits (B, k * 2^C) given block t-1 (B, k*C)
            cell = torch.from_numpy(previous).to(device)
            logits, key, value = self.step(cell.repeat(2, 1) if guidance != 1.0 else cell,
                                           torch.tensor([t], device=device), keys, values, context)  # fmt: skip
            self.store_step(keys, values, t, key, value)
            return self._combine(logits, b, guidance).cpu().numpy()

        cells = sample_cells(step, b, cfg.bits_per_cell, cfg.num_cells, temperature, uniforms, keep,
                             cfg.cells_per_step)  # (B, T, C)  # fmt: skip
        return self.grid_of(torch.from_numpy(cells).to(device))

    @torch.no_grad()
    def refine(self, states: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, strength: float = 0.5,
               temperature: float = 1.0, uniforms: np.ndarray | None = None,
               guidance: float = 1.0) -> torch.Tensor:  # fmt: skip
        """``start`` latents (B, C, h, w) in {0, 1} -> bits uint8 (B, C, h, w): the ``strength``
        fraction of the cells least likely given the caption drawn again (``sample``'s temperature,
        uniforms and guidance), the others kept. Strength 0: ``start``; 1: ``sample``."""
        scores = self.cell_log_likelihoods(states, mask, start, guidance).cpu().numpy()  # (B, T)
        given = cell_values(self.cells_of(start)).cpu().numpy()  # (B, T), prior order
        keep = (given, ~cells_to_redraw(scores, strength))  # the cells kept as given
        return self.sample(states, mask, temperature, uniforms, guidance, keep)


def sample_prior(prior: CellPrior, features, temperature: float = 1.0, uniforms: np.ndarray | None = None,
                 samples: int = 1, batch_size: int = 256, guidance: float = 1.0, start: np.ndarray | None = None,
                 strength: float = 1.0) -> np.ndarray:  # fmt: skip
    """Latents drawn for every caption of ``features`` (``TextFeatures``, N captions) -> bits uint8
    (N * samples, C, h, w), prompt-major. ``uniforms`` (N * samples, h*w): the draws' uniforms
    (``generation.cell_uniforms``; unused at temperature 0). ``start`` (N * samples, C, h, w) bits:
    refine them instead (``CellPrior.refine`` with ``strength``)."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    device = next(prior.parameters()).device
    was_training = prior.training
    prior.eval()
    rows = np.repeat(np.arange(len(features)), samples)  # (N * S,): the caption of each latent
    out = []
    for lo in range(0, len(rows), batch_size):
        part = slice(lo, lo + batch_size)
        states, mask = features.padded(rows[part], device)
        u = None if uniforms is None else uniforms[part]
        if start is None:
            out.append(prior.sample(states, mask, temperature, u, guidance).cpu().numpy())
        else:
            given = torch.from_numpy(np.ascontiguousarray(start[part])).to(device)
            out.append(prior.refine(states, mask, given, strength, temperature, u, guidance).cpu().numpy())
    prior.train(was_training)
    cfg = prior.config
    return np.concatenate(out) if out else np.zeros((0, cfg.bits_per_cell, cfg.latent_h, cfg.latent_w), np.uint8)
