"""Write a complete ONNX bundle into a staging folder; move it into place in one rename.

``export_bundle`` exports both graphs, copies the tokenizer, checks parity against torch (a
``ParityError`` when ONNX Runtime disagrees), converts to fp16, packs the optional latent
library, and writes ``manifest.json`` last. ``commit_bundle`` then replaces the target folder
with the staging folder, so a killed run never leaves a half-written bundle that looks
complete. The layout and the manifest are described in ``bitlatent.inference.bundle``.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bitlatent
from bitlatent.core.binary import LatentSpec
from bitlatent.core.io import atomic_write_json
from bitlatent.inference.bundle import (
    BUNDLE_FORMAT,
    BUNDLE_VERSION,
    DECODER_FILE,
    DECODER_FP16_FILE,
    DECODER_INT8_FILE,
    LIBRARY_FILE,
    MANIFEST_FILE,
    PRIOR_CONTEXT_FILE,
    PRIOR_FILE,
    TEXT_FILE,
    TEXT_FP16_FILE,
    TOKENIZER_FILE,
    commit_bundle,
    sha256_file,
)

from bitlatent.codec.entropy_model import EntropyModel
from bitlatent.codec.logits import ENTROPY_FILE

from .config import ExportConfig
from .entropy_model import entropy_model_parity, export_entropy_model
from .onnx_export import (
    DecoderForExport,
    TextForExport,
    convert_fp16,
    export_decoder,
    export_prior,
    export_prior_context,
    export_text_model,
    graph_io,
)
from .parity import (
    ParityError,
    ParityResult,
    decoder_parity,
    decoder_psnr_parity,
    prior_parity,
    text_parity,
    tokenizer_parity,
)
from .quantize import quantize_decoder_int8

__all__ = ["TextModelParts", "LatentLibraryInput", "export_bundle", "commit_bundle", "staging_dir"]

log = logging.getLogger(__name__)


@dataclass
class TextModelParts:
    """What the text export needs: MiniLM, the head, the tokenizer and the encoder's identity."""

    encoder: torch.nn.Module
    """The HF MiniLM model (``last_hidden_state`` of token states)."""
    head: torch.nn.Module
    """``bitlatent.text.model.TextToLatent``."""
    tokenizer_json: Path
    """MiniLM's ``tokenizer.json``."""
    tokenize: Any
    """``(prompts, max_length) -> (input_ids, attention_mask)`` tensors, the torch path's tokenizer."""
    encoder_info: dict[str, Any] = field(default_factory=dict)
    """``EncoderInfo.to_dict()`` of the encoder actually exported."""


@dataclass
class LatentLibraryInput:
    """Latents to search in retrieve / refine: packed bits (M, bytes) and their image ids."""

    packed: np.ndarray
    image_ids: np.ndarray


def staging_dir(scratch_dir: str | None = None) -> Path:
    """A fresh, empty folder to build a bundle in."""
    if scratch_dir:
        Path(scratch_dir).mkdir(parents=True, exist_ok=True)
    path = Path(tempfile.mkdtemp(prefix="onnx-bundle-", dir=scratch_dir))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o777 & ~umask)  # mkdtemp makes it 0700; the committed bundle is read by servers
    return path


def _special_ids(tokenizer_json: Path) -> dict[str, int]:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tokenizer_json))
    ids = {f"{name}_id": tok.token_to_id(f"[{name.upper()}]") for name in ("pad", "cls", "sep", "unk")}
    if any(v is None for v in ids.values()):
        raise ValueError(f"{tokenizer_json} lacks one of [PAD] [CLS] [SEP] [UNK]: {ids}")
    return {**ids, "vocab_size": tok.get_vocab_size()}


@torch.no_grad()
def _image_codes(head: torch.nn.Module, bits: np.ndarray, batch: int = 1024) -> np.ndarray:
    """Latent bits uint8 (M, C, h, w) -> image codes uint8 (M, K) (``TextToLatent.image_code_logits``)."""
    out = []
    for lo in range(0, len(bits), batch):
        logits = head.image_code_logits(torch.from_numpy(np.ascontiguousarray(bits[lo : lo + batch])))
        out.append((logits >= 0).to(torch.uint8).numpy())
    return np.concatenate(out) if out else np.zeros((0, head.config.code_bits), np.uint8)


def _write_library(path: Path, library: LatentLibraryInput, spec: LatentSpec, head: torch.nn.Module) -> dict[str, Any]:
    from bitlatent.core.binary import unpack_bits

    codes = np.concatenate([_image_codes(head, unpack_bits(library.packed[lo : lo + 8192], spec))
                            for lo in range(0, len(library.packed), 8192)])  # fmt: skip
    K = int(codes.shape[1])
    np.savez(path, bits=library.packed, codes=np.packbits(codes, axis=1, bitorder="big"),
             image_ids=np.asarray(library.image_ids, dtype=str), code_bits=np.int64(K))  # fmt: skip
    return {"file": LIBRARY_FILE, "size": int(len(library.packed)), "code_bits": K,
            "bytes_per_latent": spec.bytes_per_image, "codes_bit_order": "big"}  # fmt: skip


def _int8_latents(library: LatentLibraryInput | None, spec: LatentSpec, items: int,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, str]:  # fmt: skip
    """(calibration, check, source): uint8 (M, C, h, w) latents to set the int8 ranges with and
    others to check the result on. Library latents when there are at least two (the check takes
    the last half, at most 256), random bits otherwise."""
    from bitlatent.core.binary import unpack_bits

    n = 0 if library is None else len(library.packed)
    if n >= 2:
        n_check = min(256, n // 2)
        n_calib = min(items, n - n_check)
        bits = unpack_bits(np.concatenate([library.packed[:n_calib], library.packed[n - n_check:]]), spec)
        return bits[:n_calib].astype(np.uint8), bits[n_calib:].astype(np.uint8), "library"
    shape = (spec.bits_per_cell, spec.h, spec.w)
    return (rng.integers(0, 2, size=(items, *shape), dtype=np.uint8),
            rng.integers(0, 2, size=(64, *shape), dtype=np.uint8), "random bits")  # fmt: skip


def _add_int8_decoder(out: Path, decoder_wrapper: torch.nn.Module, library: LatentLibraryInput | None,
                      spec: LatentSpec, config: ExportConfig, rng: np.random.Generator) -> ParityResult:  # fmt: skip
    """Quantise ``out/decoder.onnx`` into ``out/decoder.int8.onnx`` and check it against torch.

    The int8 decoder is an opt-in speed trade: under ``config.int8_min_psnr`` its file is removed
    with a warning (the bundle goes without it) instead of failing the export."""
    calibration, check, source = _int8_latents(library, spec, config.int8_calibration_items, rng)
    quantize_decoder_int8(out / DECODER_FILE, out / DECODER_INT8_FILE, calibration)
    result = decoder_psnr_parity(decoder_wrapper, out / DECODER_INT8_FILE, check, config.int8_min_psnr)
    result.metrics.update(calibration_latents=int(len(calibration)), calibration_source=source)
    if result.passed:
        log.info(result.message)
    else:
        log.warning("%s: the bundle goes without the int8 decoder (the fp32 and fp16 graphs are unaffected; "
                    "the manifest's parity.decoder_int8 keeps the figure)", result.message)
        (out / DECODER_INT8_FILE).unlink()
    return result


def _judge(results: list[ParityResult]) -> None:
    for r in results:
        (log.info if r.passed else log.error)(r.message)
    failed = [r.message for r in results if not r.passed]
    if failed:
        raise ParityError("ONNX export failed its parity check against torch:\n  " + "\n  ".join(failed))


def export_bundle(decoder: torch.nn.Module, text: TextModelParts, out_dir: str | Path,
                  config: ExportConfig | None = None, library: LatentLibraryInput | None = None,
                  entropy_model: EntropyModel | None = None) -> dict[str, Any]:  # fmt: skip
    """Export everything into ``out_dir`` (empty or absent) and return the manifest. With an
    ``entropy_model`` (the ``compression`` pipeline's), ``entropy_model.onnx`` too, so a bundle
    decodes the streams of ``bitlatent encode --compress`` without torch.

    Raises ``ParityError`` when the fp32 graphs (or the fp16 ones, at their looser tolerances)
    disagree with torch, or the tokenizer copy tokenises differently; ``ValueError`` when the
    decoder and the text model do not share a latent spec. An int8 decoder under its PSNR floor
    (``config.int8_min_psnr``) is left out of the bundle with a warning; ``parity`` keeps its figure.
    """
    config = config or ExportConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if any(out.iterdir()):
        raise FileExistsError(f"{out} is not empty: export_bundle writes into a fresh staging folder")
    decoder, head = decoder.eval(), text.head.eval()
    spec: LatentSpec = decoder.latent_spec
    if head.latent_spec.shape != spec.shape:
        raise ValueError(f"the text model predicts latents {head.latent_spec.shape}, the decoder reads {spec.shape}")
    seed = int(config.seed if config.seed is not None else np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    shutil.copyfile(text.tokenizer_json, out / TOKENIZER_FILE)
    special = _special_ids(out / TOKENIZER_FILE)
    max_length = int(head.config.max_length)
    export_decoder(decoder, out / DECODER_FILE, config.opset)
    timings["export_decoder_s"] = time.perf_counter() - start
    start = time.perf_counter()
    export_text_model(text.encoder, head, out / TEXT_FILE, config.opset, special["pad_id"], special["cls_id"], special["sep_id"])
    timings["export_text_s"] = time.perf_counter() - start
    prior = getattr(head, "prior", None)
    if prior is not None:
        start = time.perf_counter()
        export_prior_context(prior.eval(), out / PRIOR_CONTEXT_FILE, config.opset)
        export_prior(prior.eval(), out / PRIOR_FILE, config.opset)
        timings["export_prior_s"] = time.perf_counter() - start

    start = time.perf_counter()
    decoder_wrapper, text_wrapper = DecoderForExport(decoder).eval(), TextForExport(text.encoder, head).eval()
    text_args = dict(max_length=max_length, vocab_size=special["vocab_size"], pad_id=special["pad_id"],
                     cls_id=special["cls_id"], sep_id=special["sep_id"])  # fmt: skip
    results = [
        tokenizer_parity(out / TOKENIZER_FILE, text.tokenize, max_length),
        decoder_parity(decoder_wrapper, out / DECODER_FILE, config.parity_batch, rng, config.image_tolerance),
        text_parity(text_wrapper, out / TEXT_FILE, config.parity_batch, rng, config.bit_agreement,
                    token_tolerance=config.prior_tolerance, **text_args),
    ]
    if prior is not None:
        results.append(prior_parity(prior.eval(), out / PRIOR_CONTEXT_FILE, out / PRIOR_FILE, config.parity_batch, rng,
                                    config.prior_tolerance))  # fmt: skip
    if entropy_model is not None:
        if tuple(entropy_model.config.latent_shape) != tuple(spec.shape):
            raise ValueError(f"the entropy model codes latents {tuple(entropy_model.config.latent_shape)}, "
                             f"the decoder reads {spec.shape}")
        export_entropy_model(entropy_model.eval(), out / ENTROPY_FILE, config.opset)
        results.append(entropy_model_parity(entropy_model, out / ENTROPY_FILE, config.parity_batch, rng,
                                            config.entropy_tolerance))  # fmt: skip
    _judge(results)
    timings["parity_s"] = time.perf_counter() - start

    models = {"decoder": DECODER_FILE, "text_to_latent": TEXT_FILE}
    if prior is not None:
        models.update(prior_context=PRIOR_CONTEXT_FILE, prior=PRIOR_FILE)
    if entropy_model is not None:
        models["entropy_model"] = ENTROPY_FILE
    if config.fp16:
        start = time.perf_counter()
        convert_fp16(out / DECODER_FILE, out / DECODER_FP16_FILE)
        convert_fp16(out / TEXT_FILE, out / TEXT_FP16_FILE)
        half = [
            decoder_parity(decoder_wrapper, out / DECODER_FP16_FILE, config.parity_batch, rng,
                           config.fp16_image_tolerance, name="decoder_fp16"),
            text_parity(text_wrapper, out / TEXT_FP16_FILE, config.parity_batch, rng, config.fp16_bit_agreement,
                        name="text_to_latent_fp16", token_tolerance=config.fp16_prior_tolerance, **text_args),
        ]  # fmt: skip
        _judge(half)
        results += half
        models.update(decoder_fp16=DECODER_FP16_FILE, text_to_latent_fp16=TEXT_FP16_FILE)
        timings["fp16_s"] = time.perf_counter() - start

    if config.int8:
        start = time.perf_counter()
        result = _add_int8_decoder(out, decoder_wrapper, library, spec, config, rng)
        results.append(result)
        if result.passed:
            models["decoder_int8"] = DECODER_INT8_FILE
        timings["int8_s"] = time.perf_counter() - start

    library_entry = None
    if library is not None and len(library.packed):
        library_entry = _write_library(out / LIBRARY_FILE, library, spec, head)

    files = sorted(p.name for p in out.iterdir() if p.is_file())
    manifest = {
        "format": BUNDLE_FORMAT,
        "version": BUNDLE_VERSION,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "bitlatent_version": bitlatent.__version__,
        "torch_version": torch.__version__,
        "opset": config.opset,
        "latent_spec": spec.to_dict(),
        "image_size": spec.image_size,
        "max_prompt_tokens": max_length,
        "tokenizer": {"file": TOKENIZER_FILE, **special, "padding": "right, to the longest prompt",
                      "truncation": "first max_prompt_tokens - 1 tokens, then [SEP]"},  # fmt: skip
        "models": {name: {"file": file, "precision": name.rsplit("_", 1)[1] if name.endswith(("_fp16", "_int8")) else "fp32",
                          "opset": config.opset, **graph_io(out / file)}
                   for name, file in models.items()},  # fmt: skip
        "library": library_entry,
        "text_encoder": text.encoder_info,
        "text_model": head.config.to_dict(),
        "decoder": decoder.describe() if hasattr(decoder, "describe") else {},
        "entropy_model": None if entropy_model is None else entropy_model.config.to_dict(),
        "parity": {"seed": seed, **{r.name: r.to_dict() for r in results}},
        "timings": {k: round(v, 2) for k, v in timings.items()},
        "files": {name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size} for name in files},
    }
    atomic_write_json(out / MANIFEST_FILE, manifest, sort_keys=False)
    return manifest
