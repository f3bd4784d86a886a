"""A throw-away git + DVC copy of the project on a tiny synthetic configuration.

The copy holds what ``dvc repro`` needs: pyproject.toml, .telemetry, .gitignore, conf/,
src/ (dvc.yaml declares code deps; Kedro puts the copy's ``src`` first on ``sys.path``, so
the copy's identical code is what runs), dvc.yaml, .dvcignore and .dvc/config. It gets its
own git identity and keeps the default remote of .dvc/config, ``../bitlatent-dvc-remote``,
which for a copy at ``<tmp>/bitlatent`` is ``<tmp>/bitlatent-dvc-remote``: nothing touches the
project's data, cache or remote.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from ruamel.yaml import YAML

from tests.tiny_project import PROJECT, TINY_PARAMETERS, copy_project, merge

# cache: false outputs live in git; the project's .gitignore must not ignore them
# (test_dvc_yaml.test_uncached_outputs_are_committed_by_git checks the real one).
GIT_TRACKED = ("data/08_reporting/metrics.json", "data/08_reporting/pretraining_curves.json",
               "data/08_reporting/alignment_curves.json", "data/08_reporting/rate_distortion/bitlatent.json",
               "data/08_reporting/rate_distortion/jpeg.json", "data/08_reporting/rate_distortion/webp.json",
               "data/08_reporting/compression.json", "data/08_reporting/compression_curves.json",
               "data/08_reporting/capacity.json")

# besides tests.tiny_project.copy_project's
COPIED_FILES = (".gitignore", "dvc.yaml", ".dvcignore", ".dvc/config", ".dvc/.gitignore",
                "benchmarks/results/rate_distortion.png")  # dvc.yaml plots the benchmark's committed curve


def command_env(home: Path) -> dict[str, str]:
    """No telemetry, this interpreter's ``kedro`` first on PATH, no user or system git config."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".gitconfig").touch()
    return {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "DVC_NO_ANALYTICS": "1",
        "KEDRO_DISABLE_TELEMETRY": "1",
        "DO_NOT_TRACK": "1",
        "HOME": str(home),
        "GIT_CONFIG_GLOBAL": str(home / ".gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
    }


@dataclass
class DvcRepo:
    """A copy of the project as its own git + DVC repository."""

    root: Path
    env: dict[str, str]

    def run(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        result = subprocess.run(list(args), cwd=self.root, env=self.env, capture_output=True, text=True,
                                timeout=timeout)
        if check and result.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stdout[-6000:]}\n{result.stderr[-6000:]}")
        return result

    def dvc(self, *args: str, check: bool = True, timeout: int = 600) -> subprocess.CompletedProcess:
        return self.run(sys.executable, "-m", "dvc", *args, check=check, timeout=timeout)

    def git(self, *args: str) -> str:
        return self.run("git", *args).stdout

    def commit(self, message: str) -> None:
        self.git("add", "-A")
        self.git("commit", "-q", "--allow-empty", "-m", message)

    def params(self, name: str) -> dict:
        return yaml.safe_load((self.root / "conf" / "base" / name).read_text())

    def write_params(self, name: str, update: dict) -> None:
        """Merge ``update`` into a parameters file, keeping its comments (as ``dvc exp run -S`` does)."""
        path = self.root / "conf" / "base" / name
        round_trip = YAML()
        content = round_trip.load(path.read_text())
        merge(content, update)
        with path.open("w") as stream:
            round_trip.dump(content, stream)


def ran_stages(output: str) -> list[str]:
    """Stages a ``dvc repro`` / ``dvc exp run`` actually ran, in order."""
    return re.findall(r"Running stage '([^']+)'", output)


def tree_digest(root: Path, *paths: str) -> dict[str, str]:
    """sha256 of every file under ``paths`` (files or folders), keyed by relative path."""
    digests = {}
    for path in paths:
        target = root / path
        files = [target] if target.is_file() else sorted(p for p in target.rglob("*") if p.is_file())
        for file in files:
            digests[file.relative_to(root).as_posix()] = hashlib.sha256(file.read_bytes()).hexdigest()
    return digests


def make_repo(root: Path) -> DvcRepo:
    """Copy the project into ``root`` (the tiny parameters of tests.tiny_project), ``git init`` and
    commit it."""
    assert PROJECT.resolve() not in root.resolve().parents, "the copy's default remote would be the project's"
    root.mkdir(parents=True)
    copy_project(root)
    for name in COPIED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, root / name)
    (root / "conf" / "local" / ".gitkeep").touch()
    shutil.copytree(PROJECT / "src", root / "src", dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for folder in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input",
                   "06_models", "07_model_output", "08_reporting"):
        (root / "data" / folder).mkdir(parents=True)
        (root / "data" / folder / ".gitkeep").touch()

    gitignore = root / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "".join(f"!{path}\n" for path in GIT_TRACKED))

    repo = DvcRepo(root, command_env(root.parent / f"{root.name}-home"))
    for path in sorted((root / "conf" / "base").glob("parameters*.yml")):
        groups = repo.params(path.name) or {}
        repo.write_params(path.name, {key: TINY_PARAMETERS[key] for key in groups if key in TINY_PARAMETERS})
    repo.git("init", "-q", "-b", "main")
    repo.git("config", "user.email", "dvc-tests@bitlatent.invalid")
    repo.git("config", "user.name", "bitlatent DVC tests")
    repo.git("config", "commit.gpgsign", "false")
    # DVC's own state (index, hashes) beside the copy, not in /var/tmp
    repo.dvc("config", "--local", "core.site_cache_dir", str(root.parent / f"{root.name}-site-cache"))
    repo.commit("tiny bitlatent project")
    return repo


@pytest.fixture(scope="module")
def reproduced(tmp_path_factory) -> tuple[DvcRepo, str]:
    """The tiny project after one ``dvc repro`` from scratch, committed; and that repro's output."""
    repo = make_repo(tmp_path_factory.mktemp("dvc") / "bitlatent")
    result = repo.dvc("repro")
    repo.commit("dvc repro")
    return repo, result.stdout + result.stderr
