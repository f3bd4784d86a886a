"""A sharded on-disk cache of per-caption text features (``encoder.TextFeatures``).

Features are kept in shards (safetensors, float16, atomic writes), keyed by a hash of the caption
text, so each caption is encoded once, ever, and a killed run keeps every shard it finished.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from bitlatent.core.io import atomic_save_tensors, atomic_write_json, load_tensors, read_json

from .encoder import DEFAULT_MAX_LENGTH, EncoderInfo, TextEncoder, TextFeatures, validate_prompts

__all__ = ["caption_key", "TextFeatureCache"]

_CACHE_FORMAT = "bitlatent.text_features"
_CACHE_VERSION = 1
_MANIFEST = "manifest.json"


def caption_key(caption: str) -> str:
    """Cache key of a caption: 32 hex digits of blake2b over its exact UTF-8 text."""
    return hashlib.blake2b(caption.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()


class TextFeatureCache:
    """Per-caption features on disk, in shards, computed once and reused.

    Layout of ``directory``:

        manifest.json                 format, encoder identity, max_length (all shards share them)
        features-00000.safetensors    tokens float16 (T, D), offsets int64 (n + 1,), pooled float16 (n, D);
        features-00001.safetensors    metadata "keys": JSON list of the n caption keys, in row order
        ...

    Each shard is written atomically once its captions are encoded, so a killed run loses at most
    one shard of work. One writer at a time per directory.
    """

    def __init__(self, directory: str | Path, max_length: int = DEFAULT_MAX_LENGTH, shard_size: int = 4096):
        self.directory = Path(directory)
        self.max_length = int(max_length)
        self.shard_size = int(shard_size)
        if self.shard_size < 1:
            raise ValueError("shard_size must be >= 1")
        self._index: dict[str, tuple[Path, int]] | None = None
        self.last_computed = 0
        """Captions encoded by the last ``get`` (0 when everything came from the cache)."""

    # -- index
    def _shards(self) -> list[Path]:
        return sorted(self.directory.glob("features-*.safetensors"))

    def _load_index(self) -> dict[str, tuple[Path, int]]:
        if self._index is None:
            from safetensors import safe_open

            index: dict[str, tuple[Path, int]] = {}
            for shard in self._shards():
                with safe_open(str(shard), framework="pt") as f:  # header only: cheap
                    keys = json.loads((f.metadata() or {})["keys"])
                for row, key in enumerate(keys):
                    index.setdefault(key, (shard, row))
            self._index = index
        return self._index

    def __len__(self) -> int:
        return len(self._load_index())

    def __contains__(self, caption: str) -> bool:
        return caption_key(caption) in self._load_index()

    def _check_manifest(self, info: EncoderInfo | None) -> None:
        """Compare with (or, with an encoder and no manifest yet, write) the manifest.
        Without ``info`` the encoder identity is not compared (it is unknown)."""
        wanted = {"format": _CACHE_FORMAT, "version": _CACHE_VERSION, "max_length": self.max_length}
        if info is not None:
            wanted["encoder"] = info.to_dict()
        path = self.directory / _MANIFEST
        if path.exists():
            found = read_json(path)
            diff = sorted(k for k in wanted if found.get(k) != wanted[k])
            if diff:
                raise ValueError(
                    f"text feature cache {self.directory} was made with other settings (differs in {diff}); "
                    f"use another directory or delete this one"
                )
        elif info is not None:
            atomic_write_json(path, wanted)

    # -- read / compute
    def get(
        self,
        captions: Sequence[str],
        encoder: TextEncoder | None = None,
        batch_size: int = 128,
        progress: bool = True,
    ) -> TextFeatures:
        """Features of ``captions`` (in that order): read from the shards, encoding (with ``encoder``)
        and storing only the captions not cached yet. ``encoder=None`` requires all to be cached."""
        captions = validate_prompts(captions)
        keys = [caption_key(c) for c in captions]
        index = self._load_index()
        missing: dict[str, str] = {}
        for k, c in zip(keys, captions):
            if k not in index and k not in missing:
                missing[k] = c
        self.last_computed = len(missing)
        if missing:
            if encoder is None:
                raise KeyError(f"{len(missing)} caption(s) are not in the cache {self.directory} and no encoder was given")
            self._check_manifest(encoder.info)
            todo = list(missing.items())
            next_id = len(self._shards())
            for lo in range(0, len(todo), self.shard_size):
                chunk = todo[lo : lo + self.shard_size]
                feats = encoder.encode([c for _, c in chunk], self.max_length, batch_size, progress)
                shard = self.directory / f"features-{next_id:05d}.safetensors"
                while shard.exists():  # never overwrite a shard
                    next_id += 1
                    shard = self.directory / f"features-{next_id:05d}.safetensors"
                atomic_save_tensors(
                    shard,
                    {"tokens": torch.from_numpy(feats.tokens), "offsets": torch.from_numpy(feats.offsets),
                     "pooled": torch.from_numpy(feats.pooled)},
                    metadata={"keys": json.dumps([k for k, _ in chunk])},
                )  # fmt: skip
                for row, (k, _) in enumerate(chunk):
                    index[k] = (shard, row)
                next_id += 1
        else:
            self._check_manifest(encoder.info if encoder is not None else None)
        return self._gather(keys, index)

    def _gather(self, keys: list[str], index: dict[str, tuple[Path, int]]) -> TextFeatures:
        by_shard: dict[Path, list[int]] = {}
        for i, k in enumerate(keys):
            by_shard.setdefault(index[k][0], []).append(i)
        parts, positions = [], []
        for shard, where in by_shard.items():
            tensors, _ = load_tensors(shard)
            feats = TextFeatures(tensors["tokens"].numpy(), tensors["offsets"].numpy(), tensors["pooled"].numpy())
            parts.append(feats.select([index[keys[i]][1] for i in where]))
            positions.extend(where)
        features = TextFeatures.concat(parts)
        return features.select(np.argsort(np.asarray(positions), kind="stable"))
