"""Helpers to run the real catalog and parameters in a scratch copy of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kedro.io import DataCatalog

PROJECT = Path(__file__).resolve().parents[2]


def load_conf(name: str) -> dict:
    return yaml.safe_load((PROJECT / "conf" / "base" / name).read_text())


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """pyproject.toml, conf/ and .telemetry in a temporary folder (outputs go to its data/)."""
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, tmp_path / name)
    shutil.copytree(PROJECT / "conf", tmp_path / "conf", ignore=shutil.ignore_patterns("local"))
    (tmp_path / "conf" / "local").mkdir()
    (tmp_path / "src").mkdir()  # the package itself is imported from the installed project
    return tmp_path


def kedro(project: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run the real ``kedro`` command in ``project``."""
    env = {**os.environ, "KEDRO_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}
    return subprocess.run([sys.executable, "-m", "kedro", *args], cwd=project, env=env,
                          capture_output=True, text=True, timeout=timeout)


def real_catalog(params: dict) -> DataCatalog:
    """The committed catalog.yml (paths relative to the cwd) plus the given parameters."""
    catalog = DataCatalog.from_config(load_conf("catalog.yml"))
    for key, value in params.items():
        catalog[f"params:{key}"] = value
    return catalog
