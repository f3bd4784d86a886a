"""kedro-datasets' Parquet, JSON and Matplotlib datasets with atomic local writes.

On the local filesystem a save goes through :func:`bitlatent.core.io.atomic_write`: the
kedro-datasets class writes a temporary file beside the target, which is fsynced and renamed
over it, so a killed run never leaves a half-written file that looks complete. Object stores
(``s3://``, ``gs://``) already replace an object in one PUT, and a versioned dataset already
writes a new path each time: both save through the kedro-datasets class unchanged.

Only kedro's public API is used: each dataset here *wraps* a kedro-datasets instance (built
with the catalog's own arguments) instead of subclassing it, and a local save builds a second
instance aimed at the temporary path and calls its ``save``. Subclassing would have to swap the
private ``_filepath`` attribute for the length of one save.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from kedro.io.core import AbstractDataset, get_protocol_and_path
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset

from bitlatent.core.io import atomic_write

__all__ = ["JSONDataset", "MatplotlibDataset", "ParquetDataset"]


class _AtomicLocalSave(AbstractDataset):
    """A kedro-datasets dataset (``wrapped``) whose local saves are atomic.

    ``filepath`` and every other argument are the wrapped class's own (``save_args``,
    ``credentials``, ``fs_args``, ``version``, ``metadata``, ...)."""

    wrapped: ClassVar[type[AbstractDataset]]

    def __init__(self, *, filepath: str, **kwargs: Any) -> None:
        self._path = str(filepath)
        self._kwargs = kwargs
        self._dataset = self.wrapped(filepath=self._path, **kwargs)
        protocol, local_path = get_protocol_and_path(self._path)
        self._local = protocol == "file" and kwargs.get("version") is None
        self._local_path = local_path  # ``file:///x`` -> ``/x``: what atomic_write takes
        self.metadata = kwargs.get("metadata")

    def load(self) -> Any:
        return self._dataset.load()

    def save(self, data: Any) -> None:
        if not self._local:
            self._dataset.save(data)
            return
        atomic_write(self._local_path, lambda tmp: self.wrapped(filepath=tmp, **self._kwargs).save(data))

    def _exists(self) -> bool:
        return self._dataset.exists()

    def _release(self) -> None:
        self._dataset.release()

    def _describe(self) -> dict[str, Any]:
        return {"filepath": self._path, "wraps": f"{self.wrapped.__module__}.{self.wrapped.__name__}",
                "atomic": self._local}  # fmt: skip


class ParquetDataset(_AtomicLocalSave):
    """``pandas.ParquetDataset`` with atomic local writes. ``save`` also takes the path of a
    finished Parquet file (a table streamed to disk), which is moved or uploaded into place."""

    wrapped = _ParquetDataset

    def save(self, data: Any) -> None:
        if not isinstance(data, (str, os.PathLike)):
            super().save(data)
            return
        source = Path(data)
        if self._local:
            atomic_write(self._local_path, lambda tmp: shutil.move(str(source), tmp))  # a rename on one filesystem
            return
        fs_args = {k: v for k, v in (self._kwargs.get("fs_args") or {}).items() if not k.startswith("open_args_")}
        fs, target = fsspec.core.url_to_fs(self._path, **(self._kwargs.get("credentials") or {}), **fs_args)
        fs.put(str(source), target)
        fs.invalidate_cache(target)
        source.unlink()


class JSONDataset(_AtomicLocalSave):
    """``json.JSONDataset`` with atomic local writes."""

    wrapped = _JSONDataset


class MatplotlibDataset(_AtomicLocalSave):
    """``matplotlib.MatplotlibDataset`` (one PNG figure per file) with atomic local writes."""

    wrapped = _MatplotlibDataset
