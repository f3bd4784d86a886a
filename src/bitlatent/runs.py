"""Run fingerprints: which checkpoint folder a training run may resume from.

A fingerprint covers the configs, the data and the source code of the model, so a rerun
with the same inputs resumes (or returns at once) and any change (including to the code,
as after a `git pull` that makes DVC re-run a stage) starts afresh.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

PACKAGE = Path(__file__).resolve().parent


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


def fingerprint(*parts: Any) -> str:
    """A short stable hash of JSON-able parts (configs, data indexes, code digests)."""
    payload = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(payload).hexdigest()[:16]


def curve_records(curves: dict[str, list[float]], keys: list[str] | None = None) -> list[dict[str, float]]:
    """Columns of equal length → a list of records (what DVC plots read)."""
    keys = keys or [k for k, v in curves.items() if len(v) == len(curves.get("step", v))]
    return [dict(zip(keys, values)) for values in zip(*(curves[k] for k in keys))]
