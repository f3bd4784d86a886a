"""Text -> image latent: per-bit logits over the latent grid, and a K-bit code shared by text and images.

    token states (B, L, 384) from MiniLM, mask (B, L)
      -> LayerNorm + Linear                               tokens  (B, L, d)
      -> text_layers blocks: tokens += SelfAttention, MLP         (B, L, d)
      queries (hq*wq, d), learned, one per patch x patch block of latent cells (hq = h / patch)
      -> N blocks:  cells += CrossAttention(cells -> tokens)      (B, hq*wq, d)
                    cells += SelfAttention(cells)   (cells agree with each other)
                    cells += MLP(cells)
      -> LayerNorm + Linear(d, C*patch*patch) per query
         -> rearranged onto the grid, + a per-bit bias            bit logits (B, C, h, w)
    [mean of the cell features (B, d), the sentence embedding: masked mean of the token states,
     L2-normalised, as MiniLM was trained to give (B, 384)]
      -> MLP                                                      text code logits (B, K)

    optional (``prior_layers`` > 0): ``prior``, an autoregressive prior over the latent's cells
    (``prior.py``), p(cell t | cells < t, caption): what the ``generate`` mode draws latents from.

    image latent bits (B, C, h, w) in {0, 1} -> ±1                     (B, C, h, w)
      image_code_input "latent":
      -> 3x3 conv, d/2 channels, at the latent grid                (B, d/2, h, w)
      -> 3x3 convs of stride 2, d channels, until the grid is <= 2   (B, d, h', w')
      -> flatten -> MLP                                            image code logits (B, K)
      image_code_input "render":
      -> the frozen decoder (a copy inside this model)             image (B, 3, H, W) in [0, 1]
         (while training: a random shift, mirror and light colour jitter)
      -> 3x3 conv+BN+ReLU stages (w, 2w, 4w channels, stride 2 each) (B, 4w, H/8, W/8)
      -> mean and max over the grid -> Linear                      image code logits (B, K)

A code bit is 1 where its logit is >= 0 (as in ``core.binary``). Training (``train.py``) makes the
text code of a caption and the image code of its image agree, so text -> image retrieval is a
Hamming search over K-bit codes, and the bit logits predict the image latent itself. The text
code reads what the cells learned (where things are, on synthetic scenes) beside the sentence
embedding MiniLM was trained to give (what a photo shows); after the joint training the two code
heads train on in a phase of their own (``train.py``).

``TextToLatentPipeline`` wraps MiniLM and this model into one module,
``forward(input_ids, attention_mask) -> (bit_logits, bits)``, with no data-dependent Python
control flow, for ONNX export (opset 18, dynamic batch and sequence).

Weights are saved as safetensors plus a JSON config (``save_text_to_latent`` /
``load_text_to_latent``), never pickled. The config records the text encoder's name and revision.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

from bitlatent.config import ConfigGroup
from bitlatent.core.binary import LatentSpec
from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
from bitlatent.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json

from .encoder import DEFAULT_MAX_LENGTH, ENCODER_NAME, mean_pool
from .layers import Attention, mlp
from .prior import CellPrior, CellPriorConfig

__all__ = [
    "TextToLatentConfig",
    "TextToLatent",
    "TextToLatentPipeline",
    "save_text_to_latent",
    "load_text_to_latent",
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "MAKE_COMMAND",
]

WEIGHTS_FILE = "text_to_latent.safetensors"
CONFIG_FILE = "text_to_latent.json"
FORMAT = "bitlatent.text_to_latent"
FORMAT_VERSION = 3
"""3: the text code reads the sentence embedding beside the cells (2: the cells; 1: an MLP image code)."""
MAKE_COMMAND = "kedro run --pipeline alignment"
"""The command that makes a text-to-latent model directory (named in 'not found' errors)."""


@dataclass
class TextToLatentConfig(ConfigGroup):
    """Architecture of the text-to-latent model; the latent fields must match the decoder's spec."""

    RETIRED = {"cell_self_attention": True, "prior_attention_dropout": 0.0}

    latent_h: int = 16
    """Latent grid height in cells (``LatentSpec.h``)."""
    latent_w: int = 16
    """Latent grid width in cells (``LatentSpec.w``)."""
    bits_per_cell: int = 8
    """``C``, bits per latent cell (``LatentSpec.bits_per_cell``)."""
    image_size: int = 64
    """Side of the image the latent decodes to (only recorded, for ``latent_spec()``)."""
    patch: int = 2
    """Each query predicts a ``patch x patch`` block of latent cells (``h / patch * w / patch``
    queries, ``C * patch**2`` logits each): attention cost falls by ``patch**4``. 1: one query per cell."""
    text_dim: int = 384
    """Width of the text encoder's token states (MiniLM: 384)."""
    width: int = 256
    """``d``: width of the cell queries and of every block."""
    heads: int = 4
    """Attention heads; ``width`` must be divisible by it."""
    text_layers: int = 1
    """Trainable self-attention blocks over the (frozen) encoder's tokens before the cells read them:
    they let words of one clause meet (e.g. "red" and "top left"); 0 disables."""
    layers: int = 2
    """Blocks of (cross-attention, self-attention among the cells, MLP) over the cell queries."""
    mlp_ratio: int = 4
    """Hidden width of each block's MLP, as a multiple of ``width``."""
    dropout: float = 0.0
    """Dropout on attention weights and MLP outputs while training."""
    prior_layers: int = 0
    """Blocks of the autoregressive cell prior trained beside the per-bit head (``prior.py``; needs
    ``bits_per_cell`` <= 10); ``generate`` then draws latents from it. 0: no prior."""
    prior_patch: int = 1
    """Each step of the cell prior draws a ``prior_patch x prior_patch`` block of cells
    (``CellPriorConfig.patch``): 2 keeps a 16 x 16 grid at the 64 steps of an 8 x 8 one."""
    prior_mlp_ratio: int = 0
    """Hidden width of the cell prior's MLPs, as a multiple of ``width``; 0: ``mlp_ratio``."""
    prior_dropout: float = 0.1
    """Dropout on the cell prior's MLP outputs while training (it overfits small latent sets quickly)."""
    prior_caption_dropout: float = 0.0
    """Fraction of captions the cell prior trains without (``CellPriorConfig.caption_dropout``):
    needed for classifier-free guidance when sampling."""
    prior_guidance: float = 1.0
    """Default classifier-free guidance weight of ``generate`` (``CellPrior.sample``): 1 is none;
    any other value needs ``prior_caption_dropout`` > 0. Unused without a prior."""
    code_bits: int = 64
    """``K``: bits of the shared text / image code used for Hamming retrieval."""
    image_code_hidden: int = 512
    """Hidden width of the MLP at the end of the image code (``image_code_network``) and of the text
    code's MLP over the sentence embedding."""
    image_code_input: str = "latent"
    """What the image code reads: "latent", a CNN over the latent bits (synthetic scenes, whose
    latents the text names cell by cell); "render", a CNN over the image the decoder renders from
    them (photos: a latent fitted to pixels is an arbitrary code of them, which a CNN learns from a
    few thousand images only as pixels). "render" keeps a frozen copy of the decoder in the model."""
    render_width: int = 32
    """Channels of the first stage of the render CNN (2x, 4x after); image_code_input "render" only."""
    encoder_name: str = ENCODER_NAME
    """The text encoder whose token states this model reads."""
    encoder_revision: str = ""
    """Its revision (``EncoderInfo.revision``), set when the model is trained."""
    max_length: int = DEFAULT_MAX_LENGTH
    """Tokens per prompt the model was trained with ([CLS] and [SEP] included)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("latent_h", "latent_w", "bits_per_cell", "image_size", "text_dim", "width", "heads",
                     "mlp_ratio", "code_bits", "image_code_hidden", "max_length"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"TextToLatentConfig.{name} must be a positive int, got {value!r}")
        if self.layers < 0 or self.text_layers < 0 or self.prior_layers < 0:
            raise ValueError("layers, text_layers and prior_layers must be >= 0")
        if self.prior_layers:
            self.prior_config()  # validates the prior's fields (C <= 10, dropout)
        if self.prior_guidance < 0 or (self.prior_layers and self.prior_guidance != 1.0 and self.prior_caption_dropout <= 0):
            raise ValueError(f"prior_guidance {self.prior_guidance} needs a cell prior trained with "
                             f"prior_caption_dropout > 0 (1.0: no guidance)")
        if self.patch < 1 or self.latent_h % self.patch or self.latent_w % self.patch:
            raise ValueError(f"patch {self.patch} must divide the latent grid {self.latent_h} x {self.latent_w}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError("dropout must be in [0, 1)")
        if self.image_code_input not in ("latent", "render"):
            raise ValueError(f"image_code_input must be 'latent' or 'render', got {self.image_code_input!r}")
        if self.render_width < 1:
            raise ValueError("render_width must be >= 1")

    @property
    def num_cells(self) -> int:
        return self.latent_h * self.latent_w

    @property
    def query_grid(self) -> tuple[int, int]:
        """``(h / patch, w / patch)``: the grid of queries."""
        return self.latent_h // self.patch, self.latent_w // self.patch

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(h=self.latent_h, w=self.latent_w, bits_per_cell=self.bits_per_cell, image_size=self.image_size)

    def prior_config(self) -> CellPriorConfig:
        """The cell prior's architecture: this model's latent grid, width, heads and token width."""
        return CellPriorConfig(latent_h=self.latent_h, latent_w=self.latent_w, bits_per_cell=self.bits_per_cell,
                               text_dim=self.text_dim, width=self.width, heads=self.heads,
                               layers=max(self.prior_layers, 1), mlp_ratio=self.prior_mlp_ratio or self.mlp_ratio,
                               dropout=self.prior_dropout, caption_dropout=self.prior_caption_dropout,
                               patch=self.prior_patch)  # fmt: skip

    @classmethod
    def for_spec(cls, spec: LatentSpec, **kwargs: Any) -> "TextToLatentConfig":
        """A config whose latent fields come from ``spec``; other fields from ``kwargs`` or defaults."""
        return cls(latent_h=spec.h, latent_w=spec.w, bits_per_cell=spec.bits_per_cell, image_size=spec.image_size, **kwargs)


# ----------------------------------------------------------------------------- blocks


def image_code_network(cfg: TextToLatentConfig) -> nn.Sequential:
    """Latent signs (B, C, h, w) in {-1, +1} -> image code logits (B, K). A 3x3 convolution reads
    each cell with its neighbours, 3x3 convolutions of stride 2 halve the grid until neither side
    exceeds 2, and an MLP maps what is left to the code. The convolutions share their weights across
    the grid, so an object's cells give the same features wherever it lies (an MLP over the
    flattened bits has to learn every place apart)."""
    d = cfg.width
    layers: list[nn.Module] = [nn.Conv2d(cfg.bits_per_cell, d // 2, 3, padding=1), nn.GELU()]
    h, w, channels = cfg.latent_h, cfg.latent_w, d // 2
    while max(h, w) > 2:
        layers += [nn.Conv2d(channels, d, 3, stride=2, padding=1), nn.GELU()]
        h, w, channels = (h + 1) // 2, (w + 1) // 2, d
    flat = channels * h * w
    return nn.Sequential(*layers, nn.Flatten(1), nn.LayerNorm(flat), nn.Linear(flat, cfg.image_code_hidden),
                         nn.GELU(), nn.Linear(cfg.image_code_hidden, cfg.code_bits))  # fmt: skip


def _conv_stage(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    return [nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU()]


class RenderCodeNetwork(nn.Module):
    """Rendered image (B, 3, H, W) in [0, 1] -> image code logits (B, K): three stride-2 stages of 3x3
    convolutions with batch norm (w, 2w, 4w channels), mean and max over what is left, a linear map."""

    def __init__(self, cfg: TextToLatentConfig):
        super().__init__()
        w = cfg.render_width
        self.net = nn.Sequential(*_conv_stage(3, w, 2), *_conv_stage(w, 2 * w, 2), *_conv_stage(2 * w, 2 * w, 1),
                                 *_conv_stage(2 * w, 4 * w, 2), *_conv_stage(4 * w, 4 * w, 1))  # fmt: skip
        self.out = nn.Linear(8 * w, cfg.code_bits)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        h = self.net((image - 0.45) / 0.25)  # (B, 4w, H/8, W/8), roughly standardised input
        return self.out(torch.cat([h.mean((2, 3)), h.amax((2, 3))], 1))  # (B, K)


def augment_images(image: torch.Tensor) -> torch.Tensor:
    """A training view of rendered images (B, 3, S, S) in [0, 1]: shifted by up to S/16 pixels (reflect
    padding), mirrored with probability 1/2, brightness / contrast / saturation within ±20%. Uses
    torch's global generator (seeded and checkpointed by the training loop)."""
    b, _, s, _ = image.shape
    pad = max(1, s // 16)
    dy, dx = torch.randint(0, 2 * pad + 1, (2,)).tolist()
    image = F.pad(image, (pad,) * 4, mode="reflect")[:, :, dy : dy + s, dx : dx + s]
    image = torch.where(torch.rand(b, 1, 1, 1) < 0.5, image.flip(3), image)
    jitter = 1 + 0.4 * (torch.rand(3, b, 1, 1, 1) - 0.5)  # (3, B, 1, 1, 1)
    gray = image.mean(1, keepdim=True)  # (B, 1, S, S)
    image = gray + (image - gray) * jitter[0]
    mean = image.mean((1, 2, 3), keepdim=True)
    return ((image - mean) * jitter[1] + mean) * jitter[2]


class TokenBlock(nn.Module):
    """Pre-norm residual block over the tokens: masked self-attention, MLP. (B, L, d) -> (B, L, d)."""

    def __init__(self, cfg: TextToLatentConfig):
        super().__init__()
        d = cfg.width
        self.norm_attn = nn.LayerNorm(d)
        self.attn = Attention(d, cfg.heads, cfg.dropout)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = mlp(d, cfg.mlp_ratio, cfg.dropout)

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        t = self.norm_attn(tokens)
        tokens = tokens + self.attn(t, t, mask)  # padding tokens are never attended to
        return tokens + self.mlp(self.norm_mlp(tokens))


class Block(nn.Module):
    """Pre-norm residual block: cross-attention to the tokens, self-attention among cells, MLP."""

    def __init__(self, cfg: TextToLatentConfig):
        super().__init__()
        d = cfg.width
        self.norm_cross = nn.LayerNorm(d)
        self.cross = Attention(d, cfg.heads, cfg.dropout)
        self.norm_self = nn.LayerNorm(d)
        self.self_attn = Attention(d, cfg.heads, cfg.dropout)
        self.norm_mlp = nn.LayerNorm(d)
        self.mlp = mlp(d, cfg.mlp_ratio, cfg.dropout)

    def forward(self, cells: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        cells = cells + self.cross(self.norm_cross(cells), tokens, mask)  # (B, h*w, d)
        c = self.norm_self(cells)
        cells = cells + self.self_attn(c, c)  # (B, h*w, d)
        return cells + self.mlp(self.norm_mlp(cells))


# ----------------------------------------------------------------------------- the model


class TextToLatent(nn.Module):
    """Token states (B, L, text_dim) + mask (B, L) -> bit logits (B, C, h, w), text code logits (B, K).

    ``renderer``: the decoder whose latents this model reads; needed (and copied, frozen) when
    ``image_code_input`` is "render"."""

    def __init__(self, config: TextToLatentConfig, renderer: BinaryLatentDecoder | None = None):
        super().__init__()
        self.config = cfg = config
        d = cfg.width
        self.token_norm = nn.LayerNorm(cfg.text_dim)
        self.token_proj = nn.Linear(cfg.text_dim, d)
        self.text_blocks = nn.ModuleList(TokenBlock(cfg) for _ in range(cfg.text_layers))
        hq, wq = cfg.query_grid
        self.cell_queries = nn.Parameter(torch.randn(hq * wq, d) * 0.02)  # (hq*wq, d), one per patch
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.out_norm = nn.LayerNorm(d)
        self.bit_head = nn.Linear(d, cfg.bits_per_cell * cfg.patch**2)  # shared by all queries
        self.bit_bias = nn.Parameter(torch.zeros(cfg.bits_per_cell, cfg.latent_h, cfg.latent_w))  # per bit
        self.prior = CellPrior(cfg.prior_config()) if cfg.prior_layers else None
        self.text_code_head = nn.Sequential(nn.LayerNorm(d + cfg.text_dim), nn.Linear(d + cfg.text_dim, cfg.image_code_hidden),
                                            nn.GELU(), nn.Linear(cfg.image_code_hidden, cfg.code_bits))  # fmt: skip
        self.renderer = None
        if cfg.image_code_input == "render":
            if renderer is None:
                raise ValueError('image_code_input "render" needs the decoder (renderer=...)')
            if renderer.latent_spec.shape != cfg.latent_spec().shape:
                raise ValueError(f"the renderer reads {renderer.latent_spec.shape} latents, the model {cfg.latent_spec().shape}")
            self.renderer = BinaryLatentDecoder(renderer.config)
            self.renderer.load_state_dict(renderer.state_dict())
            self.renderer.requires_grad_(False).eval()
            self.image_code_head = RenderCodeNetwork(cfg)
        else:
            self.image_code_head = image_code_network(cfg)

    def train(self, mode: bool = True) -> "TextToLatent":
        super().train(mode)
        if self.renderer is not None:
            self.renderer.eval()  # frozen: always rendered as at inference
        return self

    def cells(self, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Token states (B, L, text_dim) + mask (B, L) -> the cell queries' features (B, hq*wq, d)."""
        mask = mask.bool()  # (B, L)
        tokens = self.token_proj(self.token_norm(states))  # (B, L, d)
        for block in self.text_blocks:
            tokens = block(tokens, mask)  # (B, L, d)
        cells = self.cell_queries.unsqueeze(0).expand(states.shape[0], -1, -1)  # (B, hq*wq, d)
        for block in self.blocks:
            cells = block(cells, tokens, mask)  # (B, hq*wq, d)
        return self.out_norm(cells)

    def forward(self, states: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        cfg = self.config
        cells = self.cells(states, mask)  # (B, hq*wq, d)
        hq, wq = cfg.query_grid
        p = cfg.patch
        logits = self.bit_head(cells)  # (B, hq*wq, C*p*p)
        logits = logits.unflatten(1, (hq, wq)).unflatten(3, (cfg.bits_per_cell, p, p))  # (B, hq, wq, C, p, p)
        logits = logits.permute(0, 3, 1, 4, 2, 5).flatten(4, 5).flatten(2, 3)  # (B, C, hq*p, wq*p) = (B, C, h, w)
        bit_logits = logits + self.bit_bias  # (B, C, h, w)
        return bit_logits, self.text_code_logits(cells.mean(1), states, mask)  # (B, C, h, w), (B, K)

    def text_code_logits(self, cell_summary: torch.Tensor, states: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The mean of the cell features (B, d) and the token states (B, L, text_dim) + mask (B, L) ->
        text code logits (B, K): an MLP over the summary beside the sentence embedding."""
        sentence = mean_pool(states, mask.bool())  # (B, text_dim), L2-normalised
        return self.text_code_head(torch.cat([cell_summary, sentence.to(cell_summary.dtype)], -1))  # (B, K)

    def image_code_logits(self, bits: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """Image latent bits (B, C, h, w) in {0, 1} (any dtype) -> image code logits (B, K).
        ``augment``: a random training view of the rendered image (image_code_input "render")."""
        if self.renderer is not None:
            return self.render_code_logits(self.render(bits), augment)  # (B, K)
        return self.image_code_head(bits.float() * 2 - 1)  # signs (B, C, h, w) in {-1, +1} -> (B, K)

    @torch.no_grad()
    def render(self, bits: torch.Tensor) -> torch.Tensor:
        """Latent bits (B, C, h, w) in {0, 1} -> the frozen decoder's image (B, 3, H, W) in [0, 1]
        (image_code_input "render")."""
        return self.renderer(bits.float() * 2 - 1).float()

    def render_code_logits(self, image: torch.Tensor, augment: bool = False) -> torch.Tensor:
        """A rendered image (B, 3, H, W) in [0, 1] -> image code logits (B, K); ``augment``: a random
        training view of it. (Training renders every latent once and reads them from here.)"""
        return self.image_code_head(augment_images(image) if augment else image)  # (B, K)

    @property
    def latent_spec(self) -> LatentSpec:
        return self.config.latent_spec()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def describe(self) -> dict[str, Any]:
        return {"config": self.config.to_dict(), "num_parameters": self.num_parameters(),
                "latent_spec": self.latent_spec.to_dict()}  # fmt: skip


class TextToLatentPipeline(nn.Module):
    """MiniLM + ``TextToLatent``: ``forward(input_ids, attention_mask) -> (bit_logits, bits)``.

    ``input_ids`` / ``attention_mask``: int64 (B, L), as ``TextEncoder.tokenize`` makes them.
    ``bit_logits``: float32 (B, C, h, w); ``bits``: uint8 (B, C, h, w), 1 where the logit >= 0.
    With ``return_code=True`` a third output, the text code bits uint8 (B, K), is returned too
    (for Hamming retrieval). The encoder is frozen unless ``freeze_encoder=False``.
    """

    def __init__(self, encoder: nn.Module, model: TextToLatent, freeze_encoder: bool = True, return_code: bool = False):
        super().__init__()
        self.encoder = encoder
        self.model = model
        self.return_code = return_code
        for p in self.encoder.parameters():
            p.requires_grad_(not freeze_encoder)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state  # (B, L, 384)
        bit_logits, code_logits = self.model(states.float(), attention_mask)  # (B, C, h, w), (B, K)
        bits = (bit_logits >= 0).to(torch.uint8)  # (B, C, h, w)
        if self.return_code:
            return bit_logits, bits, (code_logits >= 0).to(torch.uint8)
        return bit_logits, bits


# ----------------------------------------------------------------------------- save / load


def save_text_to_latent(model: TextToLatent, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``text_to_latent.safetensors`` (float32) and ``text_to_latent.json`` (config, encoder
    name and revision, latent spec, parameter count, ``extra``) into ``directory``, atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cfg = model.config
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **model.describe(),
            "encoder": {"name": cfg.encoder_name, "revision": cfg.encoder_revision}, "extra": extra or {}}  # fmt: skip
    if model.renderer is not None:
        meta["renderer"] = model.renderer.config.to_dict()  # its weights are in the safetensors file
    state = {k: v.float() for k, v in model.state_dict().items()}
    atomic_save_tensors(directory / WEIGHTS_FILE, state, metadata={"config": json.dumps(cfg.to_dict())})
    atomic_write_json(directory / CONFIG_FILE, meta)
    return directory


def load_text_to_latent(directory: str | Path, device: str | torch.device = "cpu") -> TextToLatent:
    """Inverse of ``save_text_to_latent`` (strict), in eval mode. A missing directory or file, or a
    model this code no longer builds, is an error that names the command that makes it."""
    directory = Path(directory)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(
                f"no text-to-latent model at {directory} ({name} is missing); make it with `{MAKE_COMMAND}`"
            )
    meta = read_json(directory / CONFIG_FILE)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE} is not a {FORMAT} config")
    if meta.get("version") != FORMAT_VERSION:
        raise ValueError(f"{directory} holds a text-to-latent model of format version {meta.get('version')}, "
                         f"this bitlatent reads version {FORMAT_VERSION}: retrain it with `{MAKE_COMMAND}`")
    config = TextToLatentConfig.from_saved(meta["config"], directory, MAKE_COMMAND)
    renderer = None
    if config.image_code_input == "render":  # built here, its weights loaded below with the rest
        renderer = BinaryLatentDecoder(DecoderConfig.from_dict(meta["renderer"]))
    model = TextToLatent(config, renderer)
    state, _ = load_tensors(directory / WEIGHTS_FILE)
    model.load_state_dict(state, strict=True)
    return model.to(device).eval()
