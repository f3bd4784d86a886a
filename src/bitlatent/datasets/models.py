"""Kedro datasets for models and latents: safetensors weights + JSON config, latent shards."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from kedro.io import AbstractDataset

from bitlatent.core.decoder import BinaryLatentDecoder, load_decoder, save_decoder
from bitlatent.core.io import atomic_write_bytes
from bitlatent.data.latent_shards import LatentShard, load_latent_folder, save_latent_shard

if TYPE_CHECKING:
    from bitlatent.runs import RunIdentity

LATENT_INDEX = "index.json"


class _ModelFolder(AbstractDataset):
    """A model saved as a folder of safetensors weights + a JSON config: the path, and "exists" once a
    weights file is there. Subclasses say how the model loads and saves."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def _exists(self) -> bool:
        return self._path.is_dir() and any(self._path.glob("*.safetensors"))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class DecoderDataset(_ModelFolder):
    """A decoder folder: ``decoder.safetensors`` + ``decoder.json`` (never a pickle), with the
    decoder's fitting recipe (``core.decoder.FitRecipe``) when one is attached."""

    def load(self) -> BinaryLatentDecoder:
        if not self._exists():
            raise FileNotFoundError(
                f"no decoder in {self._path}: run `kedro run --pipelines decoder_pretraining` first")
        return load_decoder(self._path)

    def save(self, data: BinaryLatentDecoder) -> None:
        save_decoder(data, self._path)


class LatentShardsDataset(AbstractDataset[dict[str, LatentShard], dict[str, LatentShard]]):
    """A folder of latent shards. ``save`` takes ``{relative name: LatentShard}`` (for example
    ``{"pretrain/shard-00000": ...}``), writes each atomically, then ``index.json`` last;
    ``load`` returns every shard under the folder merged per split."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> dict[str, LatentShard]:
        if not self._exists():
            raise FileNotFoundError(f"no latent shards in {self._path} (no {LATENT_INDEX})")
        return load_latent_folder(self._path)

    def save(self, data: dict[str, LatentShard]) -> None:
        for name, shard in sorted(data.items()):
            save_latent_shard(self._path / f"{name}.npz", shard)
        index = {name: {"rows": int(len(shard.bits))} for name, shard in sorted(data.items())}
        atomic_write_bytes(self._path / LATENT_INDEX, json.dumps(index, indent=2).encode())

    def _exists(self) -> bool:
        return (self._path / LATENT_INDEX).is_file() or any(self._path.glob(f"*/{LATENT_INDEX}"))

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class LatentParts:
    """The latent folder of ``latent_adaptation``: one ``part-K-of-N/`` per job.

    A job writes its shards one by one (each atomically) and its ``index.json`` last, so a
    rerun skips what is done and a half-done part is never read. ``fingerprint.json`` holds
    the run's identity (``bitlatent.runs.RunIdentity``: decoder hash, fit settings, image
    shards, code); when it changes, the part is started afresh instead of mixing latents of
    two decoders.
    """

    def __init__(self, root: Path):
        self.root = Path(root)

    def part_dir(self, part: int, num_parts: int) -> Path:
        return self.root / f"part-{part}-of-{num_parts}"

    def open_part(self, part: int, num_parts: int, identity: RunIdentity) -> Path:
        """The part's folder, emptied first if another run (``identity``) fitted it."""
        return identity.open_folder(self.part_dir(part, num_parts), "fingerprint.json")

    def complete_parts(self) -> list[Path]:
        return sorted(p.parent for p in self.root.glob(f"part-*/{LATENT_INDEX}"))

    def merged(self) -> dict[str, LatentShard]:
        """Every part's shards, merged per split. All parts must come from one split of the work
        (one N, every job 0..N-1 finished): a stale part of another N would count latents twice."""
        parts = self.complete_parts()
        if not parts:
            raise FileNotFoundError(
                f"no finished latent_adaptation part in {self.root}: run "
                f"`kedro run --pipelines latent_adaptation` first")
        counts = sorted({int(p.name.rsplit("-of-", 1)[1]) for p in parts})
        if len(counts) > 1:
            raise ValueError(
                f"{self.root} holds latent_adaptation parts of {counts} jobs: delete the folders of the "
                f"job count you no longer use (part-*-of-<N>) so no latent is counted twice")
        wanted = {f"part-{k}-of-{counts[0]}" for k in range(counts[0])}
        missing = sorted(wanted - {p.name for p in parts})
        if missing:
            raise FileNotFoundError(
                f"latent_adaptation jobs not finished: {missing}; run them with "
                f"--params latent_adaptation.shard=K,latent_adaptation.num_shards={counts[0]}")
        merged: dict[str, list[LatentShard]] = {}
        for part in parts:
            for split, shard in load_latent_folder(part).items():
                merged.setdefault(split, []).append(shard)
        result = {split: LatentShard(np.concatenate([s.bits for s in shards]),
                                     np.concatenate([s.image_ids for s in shards]), shards[0].spec)
                  for split, shards in merged.items()}
        for split, shard in result.items():
            if len(np.unique(shard.image_ids)) != len(shard.image_ids):
                raise ValueError(f"duplicate image ids among the {split} latents in {self.root}")
        return result


class LatentPartsDataset(AbstractDataset[dict, LatentParts]):
    """``load`` gives the ``LatentParts`` handle (empty is fine); ``save`` takes a job's summary
    (``{"part": k, "num_parts": n, ...}``) and writes that part's ``index.json``, marking it done."""

    def __init__(self, path: str, metadata: dict[str, Any] | None = None):
        self._path = Path(path)
        self.metadata = metadata

    def load(self) -> LatentParts:
        return LatentParts(self._path)

    def save(self, data: dict) -> None:
        folder = LatentParts(self._path).part_dir(int(data["part"]), int(data["num_parts"]))
        atomic_write_bytes(folder / LATENT_INDEX, json.dumps(data, indent=2).encode())

    def _exists(self) -> bool:
        return bool(LatentParts(self._path).complete_parts())

    def _describe(self) -> dict[str, Any]:
        return {"path": str(self._path)}


class TextToLatentDataset(_ModelFolder):
    """A text-to-latent folder: ``text_to_latent.safetensors`` + ``text_to_latent.json``.

    ``load`` returns the ``bitlatent.text.model.TextToLatent`` head (eval mode); combine it with
    the MiniLM encoder (``bitlatent.text.encoder.load_text_encoder``) or wrap both in
    ``TextToLatentPipeline`` for ``input_ids, attention_mask -> bits``.
    """

    def load(self):
        from bitlatent.text.model import load_text_to_latent

        return load_text_to_latent(self._path)

    def save(self, data) -> None:
        from bitlatent.text.model import save_text_to_latent

        save_text_to_latent(data, self._path)


class EntropyModelDataset(_ModelFolder):
    """An entropy model folder (``bitlatent.codec.entropy_model``): ``entropy_model.safetensors`` +
    ``entropy_model.json`` (never a pickle). ``load`` returns the model in eval mode; its ``model_id``
    (the first 8 hex digits of the weights' sha256, named in every stream) is ``load_entropy_model``'s
    second value."""

    def load(self):
        from bitlatent.codec.entropy_model import load_entropy_model

        return load_entropy_model(self._path)[0]

    def save(self, data) -> None:
        from bitlatent.codec.entropy_model import save_entropy_model

        save_entropy_model(data, self._path)
