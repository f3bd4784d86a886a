"""Export the decoder and the text-to-latent model as a parity-checked ONNX bundle."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from bitlatent.core.decoder import BinaryLatentDecoder
from bitlatent.datasets.models import LatentParts
from bitlatent.export import ExportConfig, export_bundle, library_from_latents, staging_dir, text_model_parts

log = logging.getLogger(__name__)


def _all_latents(pretrain_latents: dict[str, Any], adapted_latents: LatentParts | dict | None) -> dict[str, Any]:
    shards = dict(pretrain_latents or {})
    if isinstance(adapted_latents, LatentParts):
        try:
            shards.update(adapted_latents.merged())
        except FileNotFoundError:
            log.warning("no adapted latents yet: the library holds the pretraining latents only")
    elif adapted_latents:
        shards.update(adapted_latents)
    return shards


def export_onnx(
    decoder: BinaryLatentDecoder, text_to_latent: Any, pretrain_latents: dict[str, Any],
    adapted_latents: LatentParts, entropy_model: Any, export: dict[str, Any],
) -> tuple[Path, dict[str, Any]]:  # fmt: skip
    """Export both models, check them against torch, pack the latent library: returns the
    finished staging folder (``onnx_bundle`` moves it into place) and the export report.

    The run fails (``ParityError``) when ONNX Runtime and torch disagree beyond the tolerances
    of ``params:export``; nothing is then written to the bundle's folder.
    """
    config = ExportConfig.from_dict(export)
    library = library_from_latents(_all_latents(pretrain_latents, adapted_latents),
                                   config.library_splits, config.max_library_items)  # fmt: skip
    staging = staging_dir(config.scratch_dir)
    try:
        manifest = export_bundle(decoder, text_model_parts(text_to_latent), staging, config, library, entropy_model)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    report = {
        "parity": manifest["parity"],
        "models": {name: {"file": m["file"], "bytes": manifest["files"][m["file"]]["bytes"]}
                   for name, m in manifest["models"].items()},  # fmt: skip
        "library_size": (manifest["library"] or {}).get("size", 0),
        "latent_spec": manifest["latent_spec"],
        "max_prompt_tokens": manifest["max_prompt_tokens"],
        "timings": manifest["timings"],
    }
    log.info("ONNX bundle staged in %s: %s", staging, ", ".join(sorted(manifest["files"])))
    return staging, report
