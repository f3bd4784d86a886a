"""The tiny project every end-to-end test runs: one set of parameters small enough for a 2-core
CPU (240 synthetic pairs of 32x32 images, 512-bit latents, a one-layer text model), laid over
conf/base, and a scratch copy of the project to run Kedro in.

The end-to-end tests (tests/pipelines, tests/dvc, tests/kubeflow) each take these parameters and
change only what their own assertions need, saying why beside the change.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]

# Laid over conf/base/parameters*.yml (top-level key: the parameter group of one file).
TINY_PARAMETERS: dict[str, dict[str, Any]] = {
    # conf/base's splits before the 16x16 default: the tiny runs' floors (bit accuracy > 0.5) were measured so
    "data": {"image_size": 32, "max_pairs": 240, "rows_per_shard": 40, "chunk_rows": 120,
             "splits": {"pretrain": 0.5, "adapt": 0.4, "test": 0.1}},
    "decoder": {"latent_h": 8, "latent_w": 8, "bits_per_cell": 8, "widths": [32, 24, 16],
                "blocks_per_stage": [1, 1, 1]},
    # free bits (rate_weight 0): the tiny runs' quality floors were measured so; tests/core covers the rate term
    "pretraining": {"train": {"epochs": 3, "batch_size": 16, "checkpoint_every": 20, "progress": False,
                              "rate_weight": 0.0}},
    "latent_adaptation": {"train": {"fit_steps": 10, "fit_batch_size": 64, "progress": False, "rate_weight": 0.0}},
    "alignment": {"model": {"width": 32, "layers": 1, "code_bits": 32},
                  "train": {"epochs": 2, "batch_size": 32, "progress": False}},
    "evaluation": {"codec_images": 10, "grid_images": 4, "max_images_per_split": 100,
                   "generated_captions": 20},
    "export": {"fp16": False, "parity_batch": 2},
    "compression": {"model": {"width": 32, "layers": 1}, "train": {"steps": 30, "batch_size": 32, "progress": False}},
}  # fmt: skip


def merge(base: dict, update: dict) -> dict:
    """``update`` merged into ``base`` in place (nested dicts merged, other values replaced); ``base``."""
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def base_parameters() -> dict[str, Any]:
    """Every conf/base/parameters*.yml, read afresh, by top-level key."""
    params: dict[str, Any] = {}
    for path in sorted((PROJECT / "conf" / "base").glob("parameters*.yml")):
        params.update(yaml.safe_load(path.read_text()) or {})
    return params


def tiny_parameters(*updates: dict) -> dict[str, Any]:
    """conf/base's parameters with TINY_PARAMETERS laid over them, then each of ``updates``."""
    params = merge(base_parameters(), yaml.safe_load(yaml.safe_dump(TINY_PARAMETERS)))  # a deep copy
    for update in updates:
        merge(params, update)
    return params


def copy_project(root: Path) -> Path:
    """pyproject.toml, .telemetry and conf/ (with an empty conf/local) copied into ``root``, and an
    empty src/: Kedro runs there with the installed package, and its outputs go to ``root/data``."""
    root.mkdir(parents=True, exist_ok=True)
    for name in ("pyproject.toml", ".telemetry"):
        shutil.copy(PROJECT / name, root / name)
    shutil.copytree(PROJECT / "conf", root / "conf", ignore=shutil.ignore_patterns("local"))
    (root / "conf" / "local").mkdir()
    (root / "src").mkdir(exist_ok=True)
    return root
