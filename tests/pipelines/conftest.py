"""Helpers to run the real catalog and parameters in a scratch copy of the project."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog

from tests.tiny_project import PROJECT, copy_project


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A scratch copy of the project (tests.tiny_project.copy_project) in a temporary folder."""
    return copy_project(tmp_path)


def kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real ``kedro`` command in ``project``."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    return subprocess.run([sys.executable, "-m", "kedro", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout)


def real_catalog(params: dict) -> DataCatalog:
    """The committed catalog.yml (paths relative to the cwd) plus the given parameters, each nested
    key too (``params:a`` and ``params:a.b``, as a Kedro session adds them)."""
    catalog = DataCatalog.from_config(yaml.safe_load((PROJECT / "conf" / "base" / "catalog.yml").read_text()))

    def add(prefix: str, value) -> None:
        catalog[f"params:{prefix}"] = value
        if isinstance(value, dict):
            for key, child in value.items():
                add(f"{prefix}.{key}", child)

    for key, value in params.items():
        add(key, value)
    return catalog
