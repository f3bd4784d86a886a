"""Tiny ONNX bundles, each built once per test process (exporting MiniLM takes ~15 s):

* ``tiny_export``: made by the real ``export`` pipeline through Kedro, a text model without a
  cell prior, a latent library (tests/conftest.py's ``tiny`` fixture);
* ``tiny_prior_export``: made by ``export_bundle``, a text model with a cell prior (caption
  dropout, guidance 2) and a latent library (tests/export/test_prior_export.py, tests/inference).

A bundle folder is never modified by a test (tests that tamper with files copy it first).
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
    report: Path | None
    """``export_report``'s JSON file (None: exported without the pipeline)."""
    decoder: torch.nn.Module
    head: torch.nn.Module
    library_bits: np.ndarray
    """uint8 (LIBRARY_SIZE, C, h, w): the pretrain latents put in the library."""
    library_ids: np.ndarray
    workdir: Path


PRIOR_LIBRARY_SIZE = 12


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
    catalog["entropy_model"] = MemoryDataset(tiny_entropy_model(spec), copy_mode="assign")
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


PROMPT_SEED = 4


def prior_head(decoder: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """A small text model with a cell prior for ``decoder``'s latents (random weights), trained with
    caption dropout and guidance 2 by default; peaked cell distributions that differ from cell to cell."""
    from bitlatent.text.model import TextToLatent, TextToLatentConfig

    torch.manual_seed(seed)
    config = TextToLatentConfig.for_spec(decoder.latent_spec, width=32, heads=2, layers=1, text_layers=1, code_bits=16,
                                         image_code_hidden=32, max_length=MAX_PROMPT_TOKENS, prior_layers=1,
                                         prior_caption_dropout=0.1, prior_guidance=2.0)  # fmt: skip
    head = TextToLatent(config).eval()
    # Seeded apart from the construction, so the sizes of other heads do not move these draws. With
    # PROMPT_SEED the three test prompts draw three different greedy latents; most random tiny
    # priors draw one latent for all three (their caption barely reaches the logits).
    torch.manual_seed(seed + PROMPT_SEED)
    with torch.no_grad():
        head.prior.head.bias.normal_(0.0, 2.0)  # peaked, unequal cell distributions
        head.prior.position.normal_(0.0, 1.0)  # that differ from cell to cell
    return head


def tiny_entropy_model(spec) -> torch.nn.Module:
    """An untrained entropy model (``codec.entropy_model``) for ``spec``'s latents, seeded."""
    from bitlatent.codec.entropy_model import EntropyModel, EntropyModelConfig

    torch.manual_seed(0)
    return EntropyModel(EntropyModelConfig(latent_h=spec.h, latent_w=spec.w, bits_per_cell=spec.bits_per_cell,
                                           width=32, heads=2, layers=1, mlp_ratio=2, caption_dropout=0.1)).eval()  # fmt: skip


def tiny_prior_export(tmp_path_factory: pytest.TempPathFactory) -> TinyExport:
    if "prior" not in _CACHE:
        from bitlatent.core.binary import pack_bits
        from bitlatent.export import ExportConfig, export_bundle, text_model_parts
        from bitlatent.export.bundle import LatentLibraryInput
        from tests.export.test_decoder_graph import small_decoder

        decoder = small_decoder()
        head = prior_head(decoder)
        spec = decoder.latent_spec
        entropy = tiny_entropy_model(spec)
        bits = np.random.default_rng(0).integers(0, 2, (PRIOR_LIBRARY_SIZE, *spec.shape), dtype=np.uint8)
        ids = np.arange(PRIOR_LIBRARY_SIZE)
        out = tmp_path_factory.mktemp("tiny-prior-export")
        export_bundle(decoder, text_model_parts(head), out, ExportConfig(fp16=False, int8=False, seed=0),
                      library=LatentLibraryInput(pack_bits(bits), ids), entropy_model=entropy)  # fmt: skip
        _CACHE["prior"] = TinyExport(out, None, decoder, head, bits, ids, out)
    return _CACHE["prior"]
