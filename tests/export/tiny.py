"""One tiny ONNX bundle per test session, made by the real ``export`` pipeline through Kedro.

tests/export, tests/inference and tests/serving all use it (their conftests call
``tiny_bundle``); it is built once per process: exporting MiniLM takes ~15 s. The bundle
folder is never modified by a test (tests that tamper with files copy it first).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

PROJECT = Path(__file__).resolve().parents[2]
MAX_PROMPT_TOKENS = 16
LIBRARY_SIZE = 40


@dataclass
class TinyExport:
    bundle: Path
    """The committed bundle folder (``onnx_bundle``'s filepath)."""
    report: Path
    """``export_report``'s JSON file."""
    decoder: torch.nn.Module
    head: torch.nn.Module
    library_bits: np.ndarray
    """uint8 (LIBRARY_SIZE, C, h, w): the pretrain latents put in the library."""
    library_ids: np.ndarray
    workdir: Path


_CACHE: dict[str, TinyExport] = {}


def tiny_models(seed: int = 0):
    """A 16x16 decoder on a 4x4x4 latent grid and a small text head for it (random weights)."""
    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
    from bitlatent.text.model import TextToLatent, TextToLatentConfig

    torch.manual_seed(seed)
    config = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(16, 8, 8),
                           blocks_per_stage=(1, 1, 1))  # fmt: skip
    decoder = BinaryLatentDecoder(config).eval()
    with torch.no_grad():
        for p in decoder.parameters():  # the zero-initialised projections would hide most of the graph
            p.normal_(0.0, 0.2)
    head_config = TextToLatentConfig.for_spec(config.latent_spec(), width=32, heads=2, layers=1, text_layers=1,
                                              code_bits=16, image_code_hidden=32, max_length=MAX_PROMPT_TOKENS)  # fmt: skip
    head = TextToLatent(head_config).eval()
    with torch.no_grad():
        head.bit_bias.normal_(0.0, 1.0)  # logits away from 0, so argmax bits are well defined
    return decoder, head


def catalog_entries(workdir: Path) -> dict:
    """conf/base/catalog_export.yml with its paths moved under ``workdir``."""
    entries = yaml.safe_load((PROJECT / "conf" / "base" / "catalog_export.yml").read_text())
    for entry in entries.values():
        entry["filepath"] = str(workdir / entry["filepath"])
    return entries


def export_params() -> dict:
    return yaml.safe_load((PROJECT / "conf" / "base" / "parameters_export.yml").read_text())["export"]


def build(workdir: Path) -> TinyExport:
    """Run the ``export`` pipeline with Kedro's runner on the tiny models, the real catalog entries
    and parameters (scratch folder under ``workdir``)."""
    from kedro.io import DataCatalog, MemoryDataset
    from kedro.runner import SequentialRunner

    from bitlatent.core.binary import pack_bits
    from bitlatent.core.binary import LatentSpec
    from bitlatent.data.latent_shards import LatentShard
    from bitlatent.datasets.models import LatentParts
    from bitlatent.pipelines.export import create_pipeline

    decoder, head = tiny_models()
    spec: LatentSpec = decoder.latent_spec
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(LIBRARY_SIZE, *spec.shape), dtype=np.uint8)
    ids = np.array([f"img-{i:03d}" for i in range(LIBRARY_SIZE)])
    catalog = DataCatalog.from_config(catalog_entries(workdir))
    catalog["decoder"] = MemoryDataset(decoder, copy_mode="assign")
    catalog["text_to_latent"] = MemoryDataset(head, copy_mode="assign")
    catalog["pretrain_latents"] = MemoryDataset({"pretrain": LatentShard(pack_bits(bits), ids, spec)}, copy_mode="assign")
    catalog["adapted_latents"] = MemoryDataset(LatentParts(workdir / "no-latents-yet"), copy_mode="assign")
    catalog["params:export"] = MemoryDataset({**export_params(), "scratch_dir": str(workdir / "scratch")})
    logging.getLogger("kedro").setLevel(logging.WARNING)
    SequentialRunner().run(create_pipeline(), catalog)
    entries = catalog_entries(workdir)
    return TinyExport(Path(entries["onnx_bundle"]["filepath"]), Path(entries["export_report"]["filepath"]),
                      decoder, head, bits, ids, workdir)  # fmt: skip


def tiny_export(tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    if "export" not in _CACHE:
        _CACHE["export"] = build(tmp_path_factory.mktemp("tiny-export"))
    return _CACHE["export"]
