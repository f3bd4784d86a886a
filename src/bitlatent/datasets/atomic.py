"""kedro-datasets' Parquet, JSON and Matplotlib datasets with atomic local writes.

On the local filesystem the data is written to a hidden temporary file beside the target
and renamed over it, so a killed run never leaves a half-written file that looks complete.
Object stores (``s3://``, ``gs://``) already replace an object in one PUT.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from kedro.io.core import get_filepath_str
from kedro_datasets.json import JSONDataset as _JSONDataset
from kedro_datasets.matplotlib import MatplotlibDataset as _MatplotlibDataset
from kedro_datasets.pandas import ParquetDataset as _ParquetDataset


class _AtomicLocalSave:
    """Mixin: redirect one ``save`` to a temporary path, then rename it into place."""

    _filepath: Any
    _protocol: str
    _version: Any

    def save(self, data: Any) -> None:
        if self._protocol != "file" or self._version is not None:
            return super().save(data)  # type: ignore[misc]
        final = self._filepath
        temporary = final.with_name(f".{final.name}.{uuid.uuid4().hex}.tmp")
        self._filepath = temporary
        try:
            super().save(data)  # type: ignore[misc]
            os.replace(temporary, final)
        finally:
            self._filepath = final
            Path(temporary).unlink(missing_ok=True)


class ParquetDataset(_AtomicLocalSave, _ParquetDataset):
    """``pandas.ParquetDataset`` with atomic local writes. ``save`` also takes the path of a
    finished Parquet file (a table streamed to disk), which is moved or uploaded into place."""

    def save(self, data: Any) -> None:
        if not isinstance(data, (str, os.PathLike)):
            return super().save(data)
        source = Path(data)
        target = get_filepath_str(self._get_save_path(), self._protocol)
        if self._protocol == "file":
            Path(target).parent.mkdir(parents=True, exist_ok=True)
            temporary = Path(target).with_name(f".{Path(target).name}.{uuid.uuid4().hex}.tmp")
            shutil.move(str(source), temporary)  # a rename on the same filesystem
            os.replace(temporary, target)
        else:
            self._fs.put(str(source), target)
            source.unlink()
        self._invalidate_cache()


class JSONDataset(_AtomicLocalSave, _JSONDataset):
    """``json.JSONDataset`` with atomic local writes."""


class MatplotlibDataset(_AtomicLocalSave, _MatplotlibDataset):
    """``matplotlib.MatplotlibDataset`` (PNG figures) with atomic local writes."""
