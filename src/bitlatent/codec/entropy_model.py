"""The entropy model: a masked bit-level prior over a latent's bits, given some of them and, where one
exists, a caption. It gives the codec (``coder.BitLogits``) the probability of every unknown bit.

    latent bits (B, C, h, w), known (B, C, h, w)
      -> per cell: [sign * known, known]                                          (B, h*w, 2C)
      -> a token per patch x patch block of k = patch**2 cells (raster order of the blocks, raster
         order inside: ``text.prior.cells_of``), its cells side by side           (B, T = h*w/k, k*2C)
      -> Linear(k*2C, d) + learned position per token                             (B, T, d)
    caption: MiniLM token states (B, L, 384), mask (B, L)
      -> LayerNorm + Linear                                                       tokens  (B, L, d)
         (an "uncaptioned" row reads one learned "no caption" token instead)
      -> N blocks:  x += SelfAttention(x)                 every token sees every token (bidirectional)
                    x += CrossAttention(x -> tokens)
                    x += MLP(x)
      -> LayerNorm + Linear(d, k*C)                                               (B, T, k*C)
      -> back to the grid (``text.prior.grid_of``)                                logits (B, C, h, w)

The logit of bit (c, y, x) is log P(bit = 1) - log P(bit = 0) given the known bits; what the input
holds at unknown bits is ignored (the input is ``sign * known``, 0 there). With ``patch`` 1 a token
is one cell; with ``patch`` 2 a 16x16 grid has the 64 tokens of an 8x8 one, so the transformer's
work (training, every coding stage) does not grow with the grid's side: attention among cells
becomes attention among blocks, and a block's cells read each other's known bits through their
shared token. Trained (``masked_bce``) as MaskGIT trains: per row a fraction ``cos(pi/2 * u)``,
u ~ U(0, 1), of the bits is hidden, and the loss is the cross-entropy of the hidden bits. The
codec's stages (``schedule``) reveal a random set of bits in the same way, so each stage's coding
context is one the model was trained on.

One model codes with and without a caption: a fraction ``caption_dropout`` of the training rows
reads the "no caption" token. ``bitlatent encode --compress`` codes without; the pipeline reports
both (``pipelines.compression``).

Saved as ``entropy_model.safetensors`` (weights) + ``entropy_model.json`` (format, config); the
first 8 hex digits (``header.MODEL_ID_DIGITS``) of the weights file's sha256 are the ``model_id``
each stream names.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlatent.config import ConfigGroup
from bitlatent.core.io import atomic_write_bytes, atomic_write_json, read_json
from bitlatent.text.layers import Attention, mlp
from bitlatent.text.prior import cells_of, grid_of

from .coder import BitLogits
from .header import MODEL_ID_DIGITS
from .logits import chunked_logits

__all__ = [
    "CONFIG_FILE",
    "WEIGHTS_FILE",
    "EntropyModel",
    "EntropyModelConfig",
    "load_entropy_model",
    "model_id",
    "save_entropy_model",
    "torch_logits",
    "weights_bytes",
]

WEIGHTS_FILE = "entropy_model.safetensors"
CONFIG_FILE = "entropy_model.json"
_FORMAT = "bitlatent.entropy_model"
_FORMAT_VERSION = 1
_REBUILD = "kedro run --pipelines compression"


@dataclass
class EntropyModelConfig(ConfigGroup):
    """Architecture of the entropy model. The latent fields come from the trained decoder's spec."""

    GROUP = "compression.model"

    latent_h: int = 8
    """Latent grid height in cells (from the decoder)."""
    latent_w: int = 8
    """Latent grid width in cells (from the decoder)."""
    bits_per_cell: int = 8
    """``C``, bits per latent cell (from the decoder)."""
    text_dim: int = 384
    """Width of the text encoder's token states (MiniLM: 384)."""
    width: int = 128
    """``d``: width of the tokens and every block."""
    heads: int = 4
    """Attention heads; ``width`` must be divisible by it."""
    layers: int = 3
    """Blocks of (self-attention among the tokens, cross-attention to the caption, MLP)."""
    mlp_ratio: int = 2
    """Hidden width of each block's MLP, as a multiple of ``width``."""
    dropout: float = 0.1
    """Dropout on the MLP outputs while training (small latent sets overfit quickly)."""
    caption_dropout: float = 0.2
    """Fraction of training rows that read the "no caption" token instead of their caption, so one
    model also codes without a caption."""
    patch: int = 1
    """Each token holds a ``patch x patch`` block of cells (their bits in, their logits out), so the
    transformer runs over ``h * w / patch**2`` tokens: its blocks' work does not grow when the grid's
    side grows by ``patch``. Must divide the grid. Saved models without the field are patch 1."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("latent_h", "latent_w", "bits_per_cell", "text_dim", "width", "heads", "layers", "mlp_ratio"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{self.GROUP}.{name} must be a positive int, got {value!r}")
        if self.width % self.heads:
            raise ValueError(f"{self.GROUP}.width {self.width} is not divisible by heads {self.heads}")
        if not all(0.0 <= p < 1.0 for p in (self.dropout, self.caption_dropout)):
            raise ValueError(f"{self.GROUP}.dropout and caption_dropout must be in [0, 1)")
        patch = self.patch
        if not isinstance(patch, int) or isinstance(patch, bool) or patch < 1 or self.latent_h % patch \
                or self.latent_w % patch:
            raise ValueError(f"{self.GROUP}.patch {patch!r} must be a positive int dividing the latent grid "
                             f"{self.latent_h} x {self.latent_w}")

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        """``(C, h, w)`` of the latents it models."""
        return (self.bits_per_cell, self.latent_h, self.latent_w)

    @property
    def cells_per_token(self) -> int:
        """``k = patch**2``: the cells one token holds."""
        return self.patch**2

    @property
    def num_tokens(self) -> int:
        """``T = h * w / patch**2``: the tokens the transformer runs over."""
        return self.latent_h * self.latent_w // self.cells_per_token


class EntropyBlock(nn.Module):
    """Pre-norm residual block: self-attention among the tokens, cross-attention to the caption, MLP."""

    def __init__(self, cfg: EntropyModelConfig):
        super().__init__()
        d = cfg.width
        self.norm_self = nn.LayerNorm(d)
        self.self_attention = Attention(d, cfg.heads, 0.0)
        self.norm_cross = nn.LayerNorm(d)
        self.cross_attention = Attention(d, cfg.heads, 0.0)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = mlp(d, cfg.mlp_ratio, cfg.dropout)

    def forward(self, x: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """x (B, T, d), tokens (B, L, d), mask bool (B, L) -> (B, T, d)."""
        h = self.norm_self(x)
        x = x + self.self_attention(h, h)
        x = x + self.cross_attention(self.norm_cross(x), tokens, mask)
        return x + self.mlp(self.norm_mlp(x))


class EntropyModel(nn.Module):
    """P(each unknown bit = 1 | the known bits, a caption or none), see the module docstring."""

    def __init__(self, config: EntropyModelConfig):
        super().__init__()
        self.config = config
        d, C, k = config.width, config.bits_per_cell, config.cells_per_token
        self.token_norm = nn.LayerNorm(config.text_dim)
        self.token_proj = nn.Linear(config.text_dim, d)
        self.null = nn.Parameter(torch.randn(d) * 0.02)  # the "no caption" token
        self.cell_in = nn.Linear(k * 2 * C, d)  # a token's k cells
        self.position = nn.Parameter(torch.randn(config.num_tokens, d) * 0.02)  # (T, d)
        self.blocks = nn.ModuleList(EntropyBlock(config) for _ in range(config.layers))
        self.out_norm = nn.LayerNorm(d)
        self.head = nn.Linear(d, k * C)

    def caption_tokens(self, states: torch.Tensor, mask: torch.Tensor, uncaptioned: torch.Tensor
                       ) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
        """MiniLM states float (B, L, text_dim), mask (B, L) (bool or 0/1), uncaptioned bool (B,) ->
        tokens (B, L, d) and mask bool (B, L); an uncaptioned row holds the "no caption" token at
        position 0, the only one it attends to (its states are not read)."""
        tokens = self.token_proj(self.token_norm(states.float()))  # (B, L, d)
        rows = uncaptioned.bool()[:, None]  # (B, 1)
        tokens = torch.where(rows[..., None], self.null.to(tokens.dtype).expand_as(tokens), tokens)
        first = torch.arange(mask.shape[1], device=mask.device)[None, :] == 0  # (1, L)
        return tokens, (rows & first) | (~rows & mask.bool())  # not a bool Where: onnxruntime has none

    def forward(self, bits: torch.Tensor, known: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
                uncaptioned: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """bits (B, C, h, w) in {0, 1} (any dtype), known bool (B, C, h, w), states float (B, L, text_dim),
        mask (B, L), uncaptioned bool (B,) -> logits float32 (B, C, h, w)."""
        cfg = self.config
        C, p, T = cfg.bits_per_cell, cfg.patch, cfg.num_tokens
        k = known.float()
        signs = (bits.float() * 2 - 1) * k  # (B, C, h, w): +-1 where known, 0 elsewhere
        cells = cells_of(torch.cat([signs, k], 1), p)  # (B, h*w, 2C) in block order
        x = self.cell_in(cells.reshape(-1, T, cfg.cells_per_token * 2 * C))  # (B, T, k*2C) -> (B, T, d)
        x = x + self.position
        tokens, attend = self.caption_tokens(states, mask, uncaptioned)
        for block in self.blocks:
            x = block(x, tokens, attend)
        logits = self.head(self.out_norm(x))  # (B, T, k*C)
        return grid_of(logits.reshape(-1, T * cfg.cells_per_token, C), cfg.latent_h, cfg.latent_w, p)  # (B, C, h, w)

    def masked_bce(self, bits: torch.Tensor, states: torch.Tensor, mask: torch.Tensor,
                   uncaptioned: torch.Tensor) -> torch.Tensor:  # fmt: skip
        """The training loss: nats per hidden bit, with a MaskGIT cosine fraction of each row's bits
        hidden (drawn from torch's global RNG). bits (B, C, h, w) in {0, 1}, the rest as in ``forward``."""
        b = bits.shape[0]
        hidden_fraction = torch.cos(math.pi / 2 * torch.rand(b, 1, 1, 1, device=bits.device))  # (B, 1, 1, 1)
        known = torch.rand(bits.shape, device=bits.device) >= hidden_fraction  # (B, C, h, w)
        logits = self(bits, known, states, mask, uncaptioned)
        per_bit = F.binary_cross_entropy_with_logits(logits, bits.float(), reduction="none")
        hidden = (~known).float()
        return (per_bit * hidden).sum() / hidden.sum().clamp_min(1.0)


def torch_logits(model: EntropyModel, states: torch.Tensor | np.ndarray | None = None,
                 mask: torch.Tensor | np.ndarray | None = None, rows_per_call: int = 256) -> BitLogits:  # fmt: skip
    """The codec's ``logits_fn`` over ``model`` (CPU, no gradients): ``logits.chunked_logits`` with or
    without captions (``states`` (n, L, text_dim), ``mask`` (n, L) of the n latents coded)."""
    model = model.eval()

    def run(*inputs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(*(torch.from_numpy(np.asarray(a)) for a in inputs)).numpy()

    return chunked_logits(run, model.config.text_dim, states, mask, rows_per_call)


# ----------------------------------------------------------------------------- files


def weights_bytes(model: EntropyModel) -> bytes:
    """The model's weights file: its ``state_dict`` serialised by safetensors."""
    from safetensors.torch import save

    return save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()})


def model_id(weights: bytes) -> str:
    """The model's id in streams: the first 8 hex digits of the sha256 of its weights file."""
    return hashlib.sha256(weights).hexdigest()[:MODEL_ID_DIGITS]


def save_entropy_model(model: EntropyModel, folder: str | Path) -> str:
    """Write the weights (safetensors) and the config (JSON) into ``folder``; returns the ``model_id``."""
    folder = Path(folder)
    weights = weights_bytes(model)
    atomic_write_bytes(folder / WEIGHTS_FILE, weights)
    atomic_write_json(folder / CONFIG_FILE, {"format": _FORMAT, "version": _FORMAT_VERSION,
                                             "config": model.config.to_dict()})
    return model_id(weights)


def load_entropy_model(folder: str | Path) -> tuple[EntropyModel, str]:
    """The model saved in ``folder`` (eval mode, CPU) and its ``model_id``.

    Raises:
        FileNotFoundError: no model there.
        ValueError: a file of another format or a newer version, or weights that do not fit the config.
    """
    from safetensors.torch import load

    folder = Path(folder)
    if not (folder / WEIGHTS_FILE).is_file() or not (folder / CONFIG_FILE).is_file():
        raise FileNotFoundError(f"no entropy model in {folder} ({WEIGHTS_FILE} + {CONFIG_FILE}): "
                                f"train one with `{_REBUILD}`")
    saved: dict[str, Any] = read_json(folder / CONFIG_FILE)
    if not isinstance(saved, dict) or saved.get("format") != _FORMAT:
        raise ValueError(f"{folder / CONFIG_FILE} is not a bitlatent entropy model")
    if saved.get("version") != _FORMAT_VERSION:
        raise ValueError(f"{folder} holds entropy model format version {saved.get('version')}, this bitlatent "
                         f"reads {_FORMAT_VERSION}: make it again with `{_REBUILD}`")
    config = EntropyModelConfig.from_saved(saved.get("config") or {}, folder, _REBUILD)
    model = EntropyModel(config)
    weights = (folder / WEIGHTS_FILE).read_bytes()
    model.load_state_dict(load(weights))  # strict: a missing or extra weight is an error
    return model.eval(), model_id(weights)
