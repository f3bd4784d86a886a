"""bitlatent.datasets.atomic: the kedro-datasets formats, written atomically on the local filesystem."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from kedro.io import DatasetError  # noqa: E402
from kedro_datasets.partitions import PartitionedDataset  # noqa: E402

from bitlatent.datasets.atomic import JSONDataset, MatplotlibDataset, ParquetDataset  # noqa: E402


def _only(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_json_round_trip_with_save_args(tmp_path: Path) -> None:
    ds = JSONDataset(filepath=str(tmp_path / "out" / "m.json"), save_args={"indent": 2})
    assert not ds.exists()
    ds.save({"b": 1, "a": [1, 2]})
    assert ds.exists() and ds.load() == {"b": 1, "a": [1, 2]}
    assert (tmp_path / "out" / "m.json").read_text() == json.dumps({"b": 1, "a": [1, 2]}, indent=2)
    assert _only(tmp_path / "out") == ["m.json"]


def test_failed_save_keeps_the_old_file(tmp_path: Path) -> None:
    ds = JSONDataset(filepath=str(tmp_path / "m.json"))
    ds.save({"v": 1})
    with pytest.raises(DatasetError):
        ds.save({"v": object()})  # not JSON: fails half-way through the write
    assert ds.load() == {"v": 1} and _only(tmp_path) == ["m.json"]


def test_parquet_frame_and_finished_file(tmp_path: Path) -> None:
    ds = ParquetDataset(filepath=str(tmp_path / "p.parquet"))
    frame = pd.DataFrame({"x": [1, 2, 3]})
    ds.save(frame)
    pd.testing.assert_frame_equal(ds.load(), frame)
    finished = tmp_path / "elsewhere" / "streamed.parquet"
    finished.parent.mkdir()
    pd.DataFrame({"x": [4]}).to_parquet(finished)
    ds.save(finished)
    assert ds.load()["x"].tolist() == [4] and not finished.exists()
    assert _only(tmp_path) == ["elsewhere", "p.parquet"] and _only(finished.parent) == []


def test_matplotlib_writes_a_png(tmp_path: Path) -> None:
    fig, ax = plt.subplots()
    ax.plot([0, 1], [1, 0])
    MatplotlibDataset(filepath=str(tmp_path / "f.png")).save(fig)
    plt.close(fig)
    assert (tmp_path / "f.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and _only(tmp_path) == ["f.png"]


def test_inside_a_partitioned_dataset(tmp_path: Path) -> None:
    parts = PartitionedDataset(path=str(tmp_path / "curves"), filename_suffix=".json",
                               dataset={"type": "bitlatent.datasets.atomic.JSONDataset", "save_args": {"indent": 2}})  # fmt: skip
    parts.save({"jpeg": {"psnr": [1.0]}, "webp": {"psnr": [2.0]}})
    loaded = parts.load()
    assert sorted(loaded) == ["jpeg", "webp"] and loaded["webp"]() == {"psnr": [2.0]}
    assert _only(tmp_path / "curves") == ["jpeg.json", "webp.json"]
    assert "bitlatent.datasets.atomic.JSONDataset" in repr(parts)


def test_file_urls_are_written_where_they_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``file://`` filepath (the k8s catalog on a local bucket) lands at its path, not under a
    relative ``file:`` folder of the working directory."""
    monkeypatch.chdir(tmp_path)
    target = tmp_path / "bucket" / "rejected.parquet"
    ds = ParquetDataset(filepath=f"file://{target}")
    ds.save(pd.DataFrame({"a": [1, 2]}))
    assert target.is_file() and ds.exists() and ds.load()["a"].tolist() == [1, 2]
    assert not (tmp_path / "file:").exists()
