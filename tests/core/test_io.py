"""bitlatent.core.io: a write that fails leaves the previous file, byte for byte, and no temporary file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bitlatent.core.io import (
    atomic_save_npy,
    atomic_save_tensors,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    load_tensors,
    read_json,
    replace_dir,
)


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_failed_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = atomic_write_bytes(tmp_path / "a.bin", b"old contents")

    def half_then_fail(tmp: str) -> None:
        Path(tmp).write_bytes(b"half of the new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old contents"
    assert _only(tmp_path) == ["a.bin"]  # the temporary file is gone


def test_interrupted_write_keeps_the_old_file(tmp_path: Path) -> None:
    target = atomic_write_json(tmp_path / "a.json", {"v": 1})

    def interrupted(tmp: str) -> None:
        Path(tmp).write_text('{"v": 2', encoding="utf-8")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, interrupted)
    assert read_json(target) == {"v": 1}
    assert _only(tmp_path) == ["a.json"]


def test_failed_tensor_save_keeps_the_old_file(tmp_path: Path) -> None:
    target = atomic_save_tensors(tmp_path / "w.safetensors", {"w": torch.ones(3)}, metadata={"k": "v"})
    shared = torch.zeros(3)
    with pytest.raises(RuntimeError, match="share memory"):  # safetensors refuses inside the write
        atomic_save_tensors(target, {"w": shared, "v": shared})
    tensors, metadata = load_tensors(target)
    assert torch.equal(tensors["w"], torch.ones(3)) and metadata == {"k": "v"}
    assert _only(tmp_path) == ["w.safetensors"]


def test_writers_replace_and_create_folders(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "x.npy"
    atomic_save_npy(target, np.arange(3))
    atomic_save_npy(target, np.arange(4))
    assert np.array_equal(np.load(target), np.arange(4)) and _only(target.parent) == ["x.npy"]


def test_json_key_order(tmp_path: Path) -> None:
    obj = {"b": 1, "a": 2}
    assert list(json.loads((atomic_write_json(tmp_path / "s.json", obj)).read_text())) == ["a", "b"]
    kept = atomic_write_json(tmp_path / "k.json", obj, sort_keys=False)
    assert list(json.loads(kept.read_text())) == ["b", "a"] and kept.read_text().endswith("}\n")


def test_replace_dir_swaps_whole_folders(tmp_path: Path) -> None:
    target = tmp_path / "bundle"
    target.mkdir()
    (target / "old.txt").write_text("old")
    staging = tmp_path / "staging"
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    replace_dir(staging, target)
    assert _only(target) == ["new.txt"] and _only(tmp_path) == ["bundle"]
