"""The binary latent decoder: ±1 bits on a coarse grid -> an RGB image. No encoder.

    z (B, C, h, w) in {-1, +1}
      -> stem: 1x1 conv, bits of a cell -> features       (B, widths[0], h, w)
      -> stage 0: residual blocks                          (B, widths[0], h, w)
      -> stage s = 1..S-1: x2 upsampling, residual blocks  (B, widths[s], h*2^s, w*2^s)
      -> head: k x k conv + sigmoid                        (B, 3, H, W) in [0, 1]

A residual block is ``x + conv1x1(act(conv_kxk(act(x))))``: one spatial convolution, one
pointwise; the activation is SiLU. Upsampling is a 1x1 conv to 4x channels + depth-to-space
("pixelshuffle": no spatial reach). There is no normalisation over space, no attention, nothing
global, so an output pixel depends only on a bounded window of latent cells: each k x k conv at
stage s widens it by (k-1)/2^s cells. ``receptive_field_cells()``
computes the width exactly from the layer list, ``influence_box()`` the pixels one cell can change.

Weights are saved as safetensors plus a JSON config (``save_decoder`` / ``load_decoder``),
never pickled. The JSON also holds the decoder's ``FitRecipe``: how latents are fitted for it, so
every consumer (``bitlatent encode`` / ``evaluate``, benchmarks) fits as the pipeline does.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from bitlatent.config import ConfigGroup

from .binary import LatentSpec
from .config import TrainConfig
from .io import atomic_save_tensors, atomic_write_json, load_tensors, read_json

__all__ = [
    "DecoderConfig",
    "BinaryLatentDecoder",
    "save_decoder",
    "load_decoder",
    "FitRecipe",
    "ChosenFit",
    "attach_fit_recipe",
    "saved_fit_recipe",
    "choose_fit",
    "WEIGHTS_FILE",
    "CONFIG_FILE",
    "MAKE_COMMAND",
]

WEIGHTS_FILE = "decoder.safetensors"
CONFIG_FILE = "decoder.json"
FORMAT = "bitlatent.decoder"
FORMAT_VERSION = 2
"""2: ``fit_recipe`` added. Version 1 (no recipe) still loads, with TrainConfig's fitting settings."""
READABLE_VERSIONS = (1, 2)
MAKE_COMMAND = "kedro run --pipeline decoder_pretraining"
"""The command that trains a decoder (named when a decoder directory cannot be loaded)."""
OUT_CHANNELS = 3
"""The decoder's output: RGB."""


@dataclass
class DecoderConfig(ConfigGroup):
    """Decoder architecture. One entry of ``widths``/``blocks_per_stage`` per resolution stage:
    stage 0 runs at the latent grid, stage s at ``2**s`` times it, the last at the image size."""

    RETIRED = {"upsample": "pixelshuffle", "activation": "silu", "out_channels": 3}

    image_size: int = 64
    """Side of the square output image, in pixels."""
    latent_h: int = 16
    """Latent grid height in cells; ``image_size / latent_h`` must be a power of two."""
    latent_w: int = 16
    """Latent grid width in cells; must give the same upsampling factor as ``latent_h``."""
    bits_per_cell: int = 8
    """``C``, bits per latent cell = input channels."""
    widths: tuple[int, ...] = (128, 64, 32)
    """Channels of each stage, from the latent resolution up to the image resolution (multiples of
    32 run fastest on CPUs with AMX)."""
    blocks_per_stage: tuple[int, ...] = (2, 1, 1)
    """Residual blocks (one k x k conv + one 1x1 conv each) in each stage."""
    kernel_size: int = 3
    """Odd kernel size of the spatial convolutions (residual blocks and head); with the stages it
    sets how many latent cells an output pixel sees (``receptive_field_cells``)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.widths = tuple(int(v) for v in self.widths)
        self.blocks_per_stage = tuple(int(v) for v in self.blocks_per_stage)
        factor_h, factor_w = self.image_size / self.latent_h, self.image_size / self.latent_w
        if factor_h != factor_w or factor_h < 1 or factor_h != int(factor_h) or int(factor_h) & (int(factor_h) - 1):
            raise ValueError(
                f"image_size / latent grid must be the same power of two on both axes, "
                f"got {self.image_size} / ({self.latent_h}, {self.latent_w})"
            )
        if len(self.widths) != self.num_stages or len(self.blocks_per_stage) != self.num_stages:
            raise ValueError(
                f"widths and blocks_per_stage need {self.num_stages} entries (log2 of the upsampling "
                f"factor + 1), got {len(self.widths)} and {len(self.blocks_per_stage)}"
            )
        if self.kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd")

    @property
    def upsampling_factor(self) -> int:
        return self.image_size // self.latent_h

    @property
    def num_stages(self) -> int:
        return int(math.log2(self.image_size // self.latent_h)) + 1

    def latent_spec(self) -> LatentSpec:
        return LatentSpec(h=self.latent_h, w=self.latent_w, bits_per_cell=self.bits_per_cell, image_size=self.image_size)


def _conv(c_in: int, c_out: int, k: int) -> nn.Conv2d:
    return nn.Conv2d(c_in, c_out, k, padding=k // 2)


class ResBlock(nn.Module):
    """x + conv1x1(act(conv_kxk(act(x)))); the 1x1 starts at zero, so each block starts as identity."""

    def __init__(self, width: int, k: int):
        super().__init__()
        self.act = nn.SiLU()
        self.conv = _conv(width, width, k)
        self.proj = _conv(width, width, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, W, h, w) -> (B, W, h, w)
        return x + self.proj(self.act(self.conv(self.act(x))))


class Upsample(nn.Module):
    """x2 upsampling: (B, c_in, h, w) -> (B, c_out, 2h, 2w): act, 1x1 conv to 4*c_out channels, then
    depth-to-space ("pixelshuffle": each cell's features make its 2x2 children; no spatial reach)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.act = nn.SiLU()
        self.conv = _conv(c_in, 4 * c_out, 1)
        # ICNR init: the 4 sub-pixels start identical, so there is no checkerboard at init.
        with torch.no_grad():
            w = self.conv.weight.view(c_out, 4, c_in, 1, 1)
            w.copy_(w[:, :1].expand_as(w).clone())
            b = self.conv.bias.view(c_out, 4)
            b.copy_(b[:, :1].expand_as(b).clone())
        self.shuffle = nn.PixelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.conv(self.act(x)))  # (B, 4*c_out, h, w) -> (B, c_out, 2h, 2w)


class BinaryLatentDecoder(nn.Module):
    """(B, C, h, w) signs in {-1, +1} -> (B, 3, H, W) pixels in [0, 1]."""

    def __init__(self, config: DecoderConfig):
        super().__init__()
        self.config = cfg = config
        k = cfg.kernel_size
        self._ops: list[tuple[str, int]] = []  # the layer list, for the receptive field

        self.stem = _conv(cfg.bits_per_cell, cfg.widths[0], 1)
        self._ops.append(("conv", 1))
        stages = []
        for s, (width, n_blocks) in enumerate(zip(cfg.widths, cfg.blocks_per_stage)):
            layers: list[nn.Module] = []
            if s > 0:
                layers.append(Upsample(cfg.widths[s - 1], width))
                self._ops += [("conv", 1), ("up", 2)]
            for _ in range(n_blocks):
                layers.append(ResBlock(width, k))
                self._ops += [("conv", k), ("conv", 1)]
            stages.append(nn.Sequential(*layers))
        self.stages = nn.ModuleList(stages)
        self.head = nn.Sequential(nn.SiLU(), _conv(cfg.widths[-1], OUT_CHANNELS, k))
        self._ops.append(("conv", k))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.stem(z)  # (B, widths[0], h, w)
        for stage in self.stages:
            x = stage(x)  # (B, widths[s], h*2^s, w*2^s)
        return torch.sigmoid(self.head(x))  # (B, 3, H, W) in [0, 1]

    # ------------------------------------------------------------------ reporting

    @property
    def latent_spec(self) -> LatentSpec:
        return self.config.latent_spec()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def receptive_field_cells(self) -> int:
        """Width, in latent cells along one axis, of the largest window of latent cells that any
        output pixel depends on (border clipping ignored). Computed exactly from the layer list:
        walking back from one pixel, a k x k conv widens the interval by k//2 on each side and a
        x2 upsampling maps [a, b] to [floor(a/2), floor(b/2)]."""
        widest = 0
        for p in range(self.config.upsampling_factor):  # one period of pixel phases suffices
            lo, hi = p, p
            for op, arg in reversed(self._ops):
                if op == "conv":
                    lo, hi = lo - arg // 2, hi + arg // 2
                else:
                    lo, hi = lo // arg, hi // arg
            widest = max(widest, hi - lo + 1)
        return widest

    def influence_box(self, cell_y: int, cell_x: int) -> tuple[int, int, int, int]:
        """Pixels that latent cell (cell_y, cell_x) can change: ``(y0, y1, x0, x1)``, half-open,
        clipped to the image. Forward walk: a conv widens by k//2, a x2 upsampling maps
        [a, b] to [2a, 2b+1]."""

        def walk(i: int) -> tuple[int, int]:
            lo, hi = i, i
            for op, arg in self._ops:
                if op == "conv":
                    lo, hi = lo - arg // 2, hi + arg // 2
                else:
                    lo, hi = lo * arg, hi * arg + arg - 1
            return max(lo, 0), min(hi, self.config.image_size - 1) + 1

        (y0, y1), (x0, x1) = walk(cell_y), walk(cell_x)
        return y0, y1, x0, x1

    def describe(self) -> dict[str, Any]:
        """Architecture summary for reports."""
        return {
            "config": self.config.to_dict(),
            "num_parameters": self.num_parameters(),
            "receptive_field_cells": self.receptive_field_cells(),
            "latent_spec": self.latent_spec.to_dict(),
        }


# ----------------------------------------------------------------------------- save / load


@dataclass
class FitRecipe(ConfigGroup):
    """How latents are fitted for a decoder (``train.fit_latents``): the ``latent_adaptation.train``
    settings of the run that trained it, kept in ``decoder.json`` so that anything fitting new
    images for this decoder fits them as the pipeline does. Defaults: ``TrainConfig``'s."""

    GROUP = "fit_recipe"
    TRAIN_FIELDS = {
        "seed": "seed", "steps": "fit_steps", "chunk_size": "fit_batch_size", "lr": "fit_lr",
        "min_lr_ratio": "fit_min_lr_ratio", "betas": "fit_betas", "init_std": "fit_init_std",
        "logit_clip": "logit_clip", "rate_weight": "rate_weight", "cpu_bf16": "cpu_bf16", "amp": "amp",
    }  # fmt: skip
    """Each field's ``TrainConfig`` counterpart."""

    seed: int = TrainConfig.seed
    """Seed of the starting pattern: pretraining's, so fitted bits start from the pattern it used."""
    steps: int = TrainConfig.fit_steps
    """Full-chunk steps per chunk of images (``fit_steps``)."""
    chunk_size: int = TrainConfig.fit_batch_size
    """Images fitted together (``fit_batch_size``)."""
    lr: float = TrainConfig.fit_lr
    """Peak Adam learning rate of the logits (``fit_lr``)."""
    min_lr_ratio: float = TrainConfig.fit_min_lr_ratio
    """Cosine decay of ``lr`` to this fraction (``fit_min_lr_ratio``)."""
    betas: tuple[float, float] = TrainConfig.fit_betas
    """Adam betas of the logits (``fit_betas``)."""
    init_std: float = TrainConfig.fit_init_std
    """Std of the starting logits (``fit_init_std``)."""
    logit_clip: float = TrainConfig.logit_clip
    """Logits clamped to [-clip, clip] after each update."""
    rate_weight: float = TrainConfig.rate_weight
    """Weight of the rate term (``rate_weight``): new images are fitted at the rate the pipeline used."""
    cpu_bf16: bool = TrainConfig.cpu_bf16
    """bf16 autocast on CPU (where the CPU has AMX / AVX512-BF16; float32 elsewhere)."""
    amp: bool = TrainConfig.amp
    """Mixed precision on CUDA."""

    @classmethod
    def from_train(cls, train: TrainConfig) -> FitRecipe:
        return cls(**{name: getattr(train, key) for name, key in cls.TRAIN_FIELDS.items()})

    def train_config(self) -> TrainConfig:
        """TrainConfig with this recipe's fitting settings (its defaults for the rest)."""
        return TrainConfig(**{key: getattr(self, name) for name, key in self.TRAIN_FIELDS.items()})


def attach_fit_recipe(decoder: BinaryLatentDecoder, recipe: FitRecipe | None) -> BinaryLatentDecoder:
    """Give ``decoder`` the recipe ``save_decoder`` writes (``load_decoder`` attaches the saved one)."""
    decoder.fit_recipe = recipe
    return decoder


def saved_fit_recipe(decoder: BinaryLatentDecoder) -> FitRecipe | None:
    """The recipe attached to ``decoder``; None for a decoder saved without one (version 1)."""
    return getattr(decoder, "fit_recipe", None)


@dataclass
class ChosenFit:
    """The fitting settings a consumer uses, and where each came from."""

    train: TrainConfig
    """What ``fit_latents`` is called with."""
    sources: dict[str, str]
    """Recipe field -> "decoder" (its saved recipe), "base" (TrainConfig's) or the overriding option."""
    note: str | None
    """Said when the decoder has no recipe."""

    def describe(self) -> str:
        """One line: every recipe value with its source; precision as bf16 / float32."""
        recipe = FitRecipe.from_train(self.train)
        parts = []
        for f in fields(recipe):
            value = getattr(recipe, f.name)
            shown = ",".join(map(str, value)) if isinstance(value, tuple) else value
            parts.append(f"{f.name} {shown} ({self.sources[f.name]})")
        return "fitting recipe: " + ", ".join(parts)


def choose_fit(decoder: BinaryLatentDecoder, given_by: str = "given", **overrides: Any) -> ChosenFit:
    """The decoder's recipe (TrainConfig's fitting settings for a decoder saved without one), with
    ``overrides`` (recipe field -> value; None: not given) on top; ``given_by`` names their source."""
    recipe = saved_fit_recipe(decoder)
    origin, note = "decoder", None
    if recipe is None:
        recipe, origin = FitRecipe(), "base"
        note = ("this decoder was saved without a fitting recipe (decoder.json version 1): fitting with "
                "TrainConfig's base settings; retrain it with `" + MAKE_COMMAND + "` to record the run's")
    unknown = sorted(set(overrides) - set(FitRecipe.TRAIN_FIELDS))
    if unknown:
        raise ValueError(f"unknown fitting setting(s) {unknown}; known: {sorted(FitRecipe.TRAIN_FIELDS)}")
    given = {k: v for k, v in overrides.items() if v is not None}
    sources = {f.name: (given_by if f.name in given else origin) for f in fields(FitRecipe)}
    chosen = FitRecipe.from_dict({**recipe.to_dict(), **given})
    return ChosenFit(chosen.train_config(), sources, note)


def save_decoder(decoder: BinaryLatentDecoder, directory: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write ``decoder.safetensors`` (float32 weights) and ``decoder.json`` (config, latent spec,
    parameter count, receptive field, the attached ``FitRecipe`` or null, ``extra``) into
    ``directory``, each atomically."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    recipe = saved_fit_recipe(decoder)
    meta = {"format": FORMAT, "version": FORMAT_VERSION, **decoder.describe(),
            "fit_recipe": None if recipe is None else recipe.to_dict(), "extra": extra or {}}
    state = {k: v.float() for k, v in decoder.state_dict().items()}
    atomic_save_tensors(directory / WEIGHTS_FILE, state, metadata={"config": json.dumps(decoder.config.to_dict())})
    atomic_write_json(directory / CONFIG_FILE, meta)
    return directory


def load_decoder(directory: str | Path, device: str | torch.device = "cpu") -> BinaryLatentDecoder:
    """Inverse of ``save_decoder``: rebuild from the JSON config, load the safetensors weights
    (strict: every tensor present, no extra) and attach the saved ``FitRecipe`` (None when there is
    none). The decoder is returned in eval mode. A decoder of an architecture or format version this
    code no longer builds is refused with the command that trains one."""
    directory = Path(directory)
    meta = read_json(directory / CONFIG_FILE)
    if meta.get("format") != FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE} is not a {FORMAT} config")
    if meta.get("version", 1) not in READABLE_VERSIONS:
        raise ValueError(f"{directory / CONFIG_FILE} is version {meta.get('version')}; this bitlatent reads "
                         f"{list(READABLE_VERSIONS)}: make it again with `{MAKE_COMMAND}`")
    decoder = BinaryLatentDecoder(DecoderConfig.from_saved(meta["config"], directory, MAKE_COMMAND))
    state, _ = load_tensors(directory / WEIGHTS_FILE)
    decoder.load_state_dict(state, strict=True)
    recipe = meta.get("fit_recipe")
    attach_fit_recipe(decoder, None if recipe is None else FitRecipe.from_saved(recipe, directory, MAKE_COMMAND))
    return decoder.to(device).eval()
