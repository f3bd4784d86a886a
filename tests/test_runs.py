"""bitlatent.runs: a run's identity decides its folder, whether a checkpoint is resumed, and
whether partial results are kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bitlatent.runs import RunIdentity, array_digest, code_digest, run_folder, weights_digest

FREE = frozenset({"device", "progress"})


def _identity(**train) -> RunIdentity:
    return RunIdentity("pretrain", {"train": {"lr": 0.1, "device": "cpu", **train}, "betas": (0.9, 0.99),
                                    "code": "abc"}, free=FREE)  # fmt: skip


def test_key_ignores_free_settings_only() -> None:
    assert _identity().key == _identity(device="cuda", progress=False).key
    assert _identity().key != _identity(lr=0.2).key
    assert RunIdentity("fit", _identity().parts).key != _identity().key
    assert run_folder("root", _identity()) == f"root/{_identity().key}" and len(_identity().key) == 16


def test_check_accepts_its_saved_self_and_refuses_another_run(tmp_path: Path) -> None:
    saved = json.loads(json.dumps(_identity().to_dict()))  # as read back from a checkpoint
    _identity(device="cuda").check(saved, tmp_path)
    with pytest.raises(ValueError, match=r"another run \(differs in \['train'\]\)"):
        _identity(lr=0.2).check(saved, tmp_path)
    with pytest.raises(ValueError, match=r"differs in \['kind'\]"):
        RunIdentity("fit", _identity().parts, FREE).check(saved, tmp_path)


def test_open_folder_keeps_its_own_results_and_empties_another_runs(tmp_path: Path) -> None:
    folder = tmp_path / "part-0-of-1"
    _identity().open_folder(folder)
    (folder / "train").mkdir()
    (folder / "train" / "shard-00000.npz").write_bytes(b"fitted")
    _identity(progress=False).open_folder(folder)  # the same run: results kept
    assert (folder / "train" / "shard-00000.npz").read_bytes() == b"fitted"
    _identity(lr=0.2).open_folder(folder)  # another run: emptied, then stamped
    assert sorted(p.name for p in folder.iterdir()) == ["fingerprint.json"]
    assert json.loads((folder / "fingerprint.json").read_text())["train"]["lr"] == 0.2
    (folder / "fingerprint.json").unlink()
    (folder / "stale.npz").write_bytes(b"?")
    _identity(lr=0.2).open_folder(folder)  # no stamp: nothing is known to be this run's
    assert sorted(p.name for p in folder.iterdir()) == ["fingerprint.json"]


def test_digests() -> None:
    assert code_digest("core") != code_digest("text") and code_digest("runs") == code_digest("runs")
    a = np.arange(6, dtype=np.uint8)
    assert array_digest([a]) == array_digest([a.copy()]) != array_digest([a[::-1]])
    m = torch.nn.Linear(2, 2)
    before = weights_digest(m.state_dict())
    with torch.no_grad():
        m.bias.add_(1)
    assert weights_digest(m.state_dict()) != before
