"""Atomic file writes: write to a temporary name in the same folder, fsync, then ``os.replace``.

A killed process leaves either the previous file or the new one, never a half-written file
under the final name. Tensors go to safetensors (never pickle).

torch and safetensors are imported only by the tensor functions, so the byte, JSON and
``.npy`` writers serve torch-free code too (``bitlatent.data``: shards, ingest).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_save_npy",
    "atomic_save_tensors",
    "load_tensors",
    "read_json",
]


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """``write(tmp)`` fills a temporary file beside ``path``; it is fsynced and renamed to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: str | os.PathLike, obj: Any, *, sort_keys: bool = True) -> Path:
    """``obj`` as indented JSON and a final newline; keys sorted unless ``sort_keys=False``."""
    return atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode("utf-8"))


def atomic_save_npy(path: str | os.PathLike, array: np.ndarray) -> Path:
    """``np.save`` (to exactly ``path``: no ``.npy`` is appended), atomically."""

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.save(f, array)

    return atomic_write(path, write)


def read_json(path: str | os.PathLike) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def atomic_save_tensors(
    path: str | os.PathLike, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> Path:
    """Save a flat ``name -> tensor`` dict as safetensors, atomically. ``metadata`` is str -> str."""
    from safetensors.torch import save_file

    cpu = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    return atomic_write(path, lambda tmp: save_file(cpu, tmp, metadata=metadata))


def load_tensors(path: str | os.PathLike, device: str | torch.device = "cpu") -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load a safetensors file: ``(tensors, metadata)``."""
    from safetensors.torch import load_file, safe_open

    tensors = load_file(str(path), device=str(device))
    with safe_open(str(path), framework="pt") as f:
        metadata = dict(f.metadata() or {})
    return tensors, metadata


def replace_dir(staging: str | Path, target: str | Path) -> Path:
    """Replace the folder ``target`` with the finished folder ``staging``, as atomically as folders allow.

    A staging folder on another filesystem is first copied next to ``target``. Then the old folder is
    renamed aside, the new one renamed in (one rename on one filesystem; the old one is put back if
    that fails), the old one deleted: a reader sees the old folder or the new one, never a mix."""
    import shutil
    import uuid

    staging, target = Path(staging), Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if os.stat(staging).st_dev != os.stat(target.parent).st_dev:
        near = target.with_name(f".{target.name}.staging-{uuid.uuid4().hex[:8]}")
        shutil.copytree(staging, near)
        shutil.rmtree(staging, ignore_errors=True)
        staging = near
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(target, old)
    try:
        os.replace(staging, target)
    except BaseException:
        if old is not None:
            os.replace(old, target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target
