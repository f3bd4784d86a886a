"""Thin nodes over ``bitlatent.data``: all the work happens in the framework-free core."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from bitlatent.data.config import DataConfig
from bitlatent.data.ingest import check_accounting, ingest


def ingest_pairs(data: dict[str, Any]) -> tuple[Path, pd.DataFrame, pd.DataFrame, dict]:
    """Read, decode and validate every row; stage the accepted images as shards.

    Returns the staging folder of the shards, the candidate pairs, the rejected rows with
    their reasons, and the validation report (``validation.json``).
    """
    config = DataConfig.from_dict(data)
    scratch = Path(config.scratch_dir)
    scratch.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="image_shards-", dir=scratch))
    try:
        result = ingest(config, staging)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return staging, result.pairs, result.rejected, result.report


def accept_pairs(
    staged_shards: Path, candidate_pairs: pd.DataFrame, rejected_pairs: pd.DataFrame,
    validation_report: dict, data: dict[str, Any],
) -> tuple[Path, pd.DataFrame]:
    """Check that accepted + rejected = input and that the rejected fraction is within
    ``data.max_reject_fraction``; only then publish the shards and the pairs table.

    The rejected rows and the report are saved before this check, so a failed run still
    shows what was rejected and why.
    """
    try:
        check_accounting(validation_report, candidate_pairs, rejected_pairs,
                         DataConfig.from_dict(data).max_reject_fraction)
    except BaseException:
        shutil.rmtree(staged_shards, ignore_errors=True)
        raise
    return staged_shards, candidate_pairs
