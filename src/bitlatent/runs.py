"""A training run's identity, and whether a run may resume from what it finds on disk.

A run is identified by its ``kind``, its configs, its data and the digest of the code that trains
it (``RunIdentity``). The identity decides, in one place, what a rerun does:

* ``RunIdentity.key`` names the run's checkpoint folder (``run_folder``), so a rerun with the same
  inputs finds its checkpoint and resumes (or returns at once), and any change (including to the
  code, as after a ``git pull`` that makes DVC re-run a stage) starts afresh in another folder;
* ``RunIdentity.check`` refuses a checkpoint, found where the caller pointed, of another run;
* ``RunIdentity.open_folder`` empties a folder of partial results (``latent_adaptation``'s parts)
  written by another run, so results of two runs are never mixed.

Settings that may change between a run and its resumption (``free``: device, progress, how often
to checkpoint) are left out of all three. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

PACKAGE = Path(__file__).resolve().parent

__all__ = ["RunIdentity", "run_folder", "code_digest", "array_digest", "weights_digest", "curve_records"]


def code_digest(*subpackages: str) -> str:
    """sha256 over the ``.py`` files of ``bitlatent.<subpackage>`` folders (or modules)."""
    digest = hashlib.sha256()
    for name in subpackages:
        target = PACKAGE / name
        files = sorted(target.rglob("*.py")) if target.is_dir() else [target.with_suffix(".py")]
        for path in files:
            digest.update(path.relative_to(PACKAGE).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def array_digest(arrays: Iterable[Any]) -> str:
    """sha256 over the bytes of numpy arrays, in order (data given to a run)."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def weights_digest(state: dict[str, Any]) -> str:
    """sha256 over a ``state_dict``'s names and float32 values: which weights a run started from."""
    h = hashlib.sha256()
    for name, tensor in sorted(state.items()):
        h.update(name.encode())
        h.update(tensor.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def _strip(value: Any, free: frozenset[str]) -> Any:
    return {k: v for k, v in value.items() if k not in free} if isinstance(value, dict) else value


@dataclass(frozen=True)
class RunIdentity:
    """What makes two runs the same run."""

    kind: str
    """What is trained: ``pretrain``, ``fit``, ``text_to_latent``, ``latent_adaptation``."""
    parts: dict[str, Any]
    """JSON-able: configs (``to_dict()``), a description or digest of the data, the code digest."""
    free: frozenset[str] = field(default_factory=frozenset)
    """Keys, inside dict-valued parts, that may change between a run and its resumption."""

    def to_dict(self) -> dict[str, Any]:
        """What a checkpoint stores as its ``identity`` (JSON: tuples become lists, other objects strings)."""
        return json.loads(json.dumps({"kind": self.kind, **self.parts}, default=str))

    def _essential(self, identity: dict[str, Any]) -> dict[str, Any]:
        return {k: _strip(v, self.free) for k, v in identity.items()}

    @property
    def key(self) -> str:
        """A short stable hash of the identity without its free keys: the run's folder name."""
        payload = json.dumps(self._essential(self.to_dict()), sort_keys=True).encode()
        return hashlib.sha256(payload).hexdigest()[:16]

    def differences(self, saved: dict[str, Any]) -> list[str]:
        """The parts in which ``saved`` (another identity's ``to_dict()``) differs, free keys aside."""
        a, b = self._essential(saved), self._essential(self.to_dict())
        return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))

    def check(self, saved: dict[str, Any], path: str | Path) -> None:
        """Raise unless the checkpoint at ``path``, whose identity is ``saved``, is this run's."""
        diff = self.differences(saved)
        if diff:
            raise ValueError(
                f"checkpoint {path} belongs to another run (differs in {diff}); remove it or use another checkpoint_dir"
            )

    def open_folder(self, folder: str | Path, stamp: str = "fingerprint.json") -> Path:
        """``folder``, emptied first unless its ``stamp`` file says this run wrote it; then stamped."""
        from bitlatent.core.io import atomic_write_json

        folder = Path(folder)
        path = folder / stamp
        if folder.exists() and (not path.is_file() or self.differences(json.loads(path.read_text()))):
            for stale in sorted(folder.glob("**/*"), reverse=True):
                stale.unlink() if stale.is_file() else stale.rmdir()
        atomic_write_json(path, self.to_dict())
        return folder


def run_folder(root: str | Path, identity: RunIdentity) -> str:
    """The checkpoint folder of the run ``identity`` under ``root``."""
    return f"{root}/{identity.key}"


def curve_records(curves: dict[str, list[float]], keys: list[str] | None = None) -> list[dict[str, float]]:
    """Columns of equal length → a list of records (what DVC plots read)."""
    keys = keys or [k for k, v in curves.items() if len(v) == len(curves.get("step", v))]
    return [dict(zip(keys, values)) for values in zip(*(curves[k] for k in keys))]
