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

PROJECT = Path(__file__).resolve().parents[2]

# Parameters small enough for a 2-core CPU: 160 pairs of 32x32, 512-bit latents.
TINY = {
    "parameters_data_validation.yml": {
        "data": {"max_pairs": 160, "image_size": 32, "rows_per_shard": 40, "chunk_rows": 160},
    },
    "parameters_decoder_pretraining.yml": {
        "decoder": {"latent_h": 8, "latent_w": 8, "bits_per_cell": 8, "widths": [32, 24, 16],
                    "blocks_per_stage": [1, 1, 1]},
        "pretraining": {"train": {"epochs": 3, "batch_size": 16, "progress": False}},
    },
    "parameters_latent_adaptation.yml": {
        "latent_adaptation": {"train": {"fit_steps": 10, "fit_batch_size": 64, "progress": False}},
    },
    "parameters_alignment.yml": {
        "alignment": {"model": {"width": 32, "layers": 1, "code_bits": 32},
                      "train": {"epochs": 2, "batch_size": 32, "progress": False}},
    },
    "parameters_evaluation.yml": {
        "evaluation": {"codec_images": 10, "grid_images": 4, "max_images_per_split": 100,
                       "generated_captions": 20},
    },
    "parameters_export.yml": {
        "export": {"fp16": False, "parity_batch": 2},
    },
}

# cache: false outputs live in git; the project's .gitignore must not ignore them
# (test_dvc_yaml.test_uncached_outputs_are_committed_by_git checks the real one).
GIT_TRACKED = ("data/08_reporting/metrics.json", "data/08_reporting/pretraining_curves.json",
               "data/08_reporting/alignment_curves.json", "data/08_reporting/rate_distortion/bitlatent.json",
               "data/08_reporting/rate_distortion/jpeg.json", "data/08_reporting/rate_distortion/webp.json")

COPIED_FILES = ("pyproject.toml", ".telemetry", ".gitignore", "dvc.yaml", ".dvcignore",
                ".dvc/config", ".dvc/.gitignore")


def _merge(base: dict, update: dict) -> dict:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


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
        _merge(content, update)
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
    """Copy the project into ``root`` (tiny parameters), ``git init`` and commit it."""
    assert PROJECT.resolve() not in root.resolve().parents, "the copy's default remote would be the project's"
    root.mkdir(parents=True)
    for name in COPIED_FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "conf" / "local" / ".gitkeep").touch()
    shutil.copytree(PROJECT / "src", root / "src",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"))
    for folder in ("01_raw", "02_intermediate", "03_primary", "04_feature", "05_model_input",
                   "06_models", "07_model_output", "08_reporting"):
        (root / "data" / folder).mkdir(parents=True)
        (root / "data" / folder / ".gitkeep").touch()

    gitignore = root / ".gitignore"
    gitignore.write_text(gitignore.read_text() + "".join(f"!{path}\n" for path in GIT_TRACKED))

    repo = DvcRepo(root, command_env(root.parent / f"{root.name}-home"))
    for name, update in TINY.items():
        repo.write_params(name, update)
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
