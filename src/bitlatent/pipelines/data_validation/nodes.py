"""Thin nodes over ``bitlatent.data``: all the work happens in the framework-free core."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from bitlatent.data.config import DataConfig
from bitlatent.data.ingest import check_accounting, ingest, staged_pairs_path


def ingest_pairs(data: dict[str, Any]) -> tuple[Path, Path, pd.DataFrame, dict]:
    """Read, decode and validate every row; stage the accepted images as shards.

    Returns the staging folder of the shards, the staged pairs table (a Parquet file streamed
    chunk by chunk, so memory stays flat), the rejected rows with their reasons, and the
    validation report (``validation.json``).
    """
    config = DataConfig.from_dict(data)
    scratch = Path(config.scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="image_shards-", dir=scratch))
    try:
        result = ingest(config, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        staged_pairs_path(staging).unlink(missing_ok=True)
        raise
    return staging, result.pairs_path, result.rejected, result.report


def accept_pairs(
    staged_shards: Path, candidate_pairs: Path, rejected_pairs: pd.DataFrame,
    validation_report: dict, data: dict[str, Any],
) -> tuple[Path, Path]:
    """Check that accepted + rejected = input and that the rejected fraction is within
    ``data.max_reject_fraction``; only then publish the shards and the pairs table.

    The rejected rows and the report are saved before this check, so a failed run still
    shows what was rejected and why.
    """
    try:
        check_accounting(validation_report, pq.ParquetFile(candidate_pairs).metadata.num_rows,
                         rejected_pairs, DataConfig.from_dict(data).max_reject_fraction)
    except BaseException:
        shutil.rmtree(staged_shards, ignore_errors=True)
        Path(candidate_pairs).unlink(missing_ok=True)
        raise
    return staged_shards, candidate_pairs
