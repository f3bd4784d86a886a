"""The exported ONNX bundle on disk: file names, ``manifest.json``, sha256 checks, the latent library. No torch.

A bundle is one folder (``data/06_models/onnx/`` by default)::

    manifest.json             what is below, with the sha256 and size of every other file
    decoder.onnx              bits uint8 (B, C, h, w) -> image uint8 (B, H, W, 3), image_float (B, 3, H, W)
    text_to_latent.onnx       input_ids, attention_mask int64 (B, L) -> bit_logits, bits, code_bits
    decoder.fp16.onnx         the same graphs in float16 (float32/uint8/int64 inputs and outputs
    text_to_latent.fp16.onnx  unchanged), for GPUs; optional
    decoder.int8.onnx         the decoder with int8 convolutions, same inputs and outputs, for CPUs; optional
    prior_context.onnx        the cell prior (text models with one): what it reads of a caption, once
    prior.onnx                per caption, then one cell per call (cached keys and values) -> cell_logits;
                              ``generate`` draws latents cell by cell with them (``onnx_prior.py``)
    entropy_model.onnx        the entropy model (``bitlatent.codec``): bits, known bits, caption states
                              -> per-bit logits; decodes ``bitlatent encode --compress`` streams
    tokenizer.json            MiniLM's tokenizer (the `tokenizers` library reads it)
    library.npz               optional latent library for retrieve / refine: packed latent bits,
                              packed image codes, image ids

``manifest.json`` (``format`` = "bitlatent.onnx_bundle", ``version`` = 2; version 1's prior.onnx read
the caption at every cell and had no prior_context.onnx: such a bundle's prior is refused, the rest reads)::

    latent_spec        h, w, bits_per_cell, image_size, bit_order, layout (``core.binary.LatentSpec``)
    image_size         side of the square output images, in pixels
    max_prompt_tokens  tokens per prompt the text model was trained with ([CLS] and [SEP] included)
    tokenizer          file, pad/cls/sep/unk ids
    models             name -> {file, precision, opset, inputs, outputs}; each input/output is
                       {name, dtype, shape, doc} with symbolic dims as strings ("batch", "sequence")
    library            null, or {file, size, code_bits, bytes_per_latent}
    entropy_model      null, or the entropy model's config (``codec.EntropyModelConfig``)
    parity             the export's parity check against torch (max abs differences, bit agreement)
    files              file name -> {sha256, bytes}, for every file but the manifest itself
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitlatent.core.io import replace_dir
from bitlatent.generation import code_signs

__all__ = [
    "BUNDLE_FORMAT",
    "BUNDLE_VERSION",
    "MANIFEST_FILE",
    "DECODER_FILE",
    "TEXT_FILE",
    "DECODER_FP16_FILE",
    "TEXT_FP16_FILE",
    "DECODER_INT8_FILE",
    "PRIOR_FILE",
    "PRIOR_CONTEXT_FILE",
    "TOKENIZER_FILE",
    "LIBRARY_FILE",
    "BundleError",
    "LatentLibrary",
    "sha256_file",
    "read_manifest",
    "verify_files",
    "model_entry",
    "commit_bundle",
]

BUNDLE_FORMAT = "bitlatent.onnx_bundle"
BUNDLE_VERSION = 2
MANIFEST_FILE = "manifest.json"
DECODER_FILE = "decoder.onnx"
TEXT_FILE = "text_to_latent.onnx"
DECODER_FP16_FILE = "decoder.fp16.onnx"
TEXT_FP16_FILE = "text_to_latent.fp16.onnx"
DECODER_INT8_FILE = "decoder.int8.onnx"
PRIOR_FILE = "prior.onnx"
PRIOR_CONTEXT_FILE = "prior_context.onnx"
TOKENIZER_FILE = "tokenizer.json"
LIBRARY_FILE = "library.npz"
MAKE_COMMAND = "kedro run --pipelines export"

_REQUIRED_KEYS = ("format", "version", "latent_spec", "image_size", "max_prompt_tokens", "tokenizer", "models", "files")


class BundleError(ValueError):
    """The folder is not a complete, intact ONNX bundle."""


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_files(directory: str | Path, manifest: dict[str, Any]) -> None:
    """Every file the manifest lists exists with its size and sha256; a ``BundleError`` otherwise."""
    directory = Path(directory)
    for name, info in manifest["files"].items():
        path = directory / name
        if not path.is_file():
            raise BundleError(f"{path} is missing (listed in {MANIFEST_FILE})")
        if path.stat().st_size != int(info["bytes"]):
            raise BundleError(f"{path} is {path.stat().st_size} bytes, {MANIFEST_FILE} says {info['bytes']}")
        actual = sha256_file(path)
        if actual != info["sha256"]:
            raise BundleError(f"{path} has sha256 {actual}, {MANIFEST_FILE} says {info['sha256']}: the file was changed")


def read_manifest(directory: str | Path, verify: bool = True) -> dict[str, Any]:
    """Read ``manifest.json`` of a bundle; with ``verify``, check every file's size and sha256."""
    directory = Path(directory)
    path = directory / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"no ONNX bundle at {directory} ({MANIFEST_FILE} is missing); make one with `{MAKE_COMMAND}`")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise BundleError(f"{path} is not valid JSON: {error}") from error
    missing = [k for k in _REQUIRED_KEYS if k not in manifest]
    if missing:
        raise BundleError(f"{path} lacks {missing}")
    if manifest["format"] != BUNDLE_FORMAT:
        raise BundleError(f"{path} is not a {BUNDLE_FORMAT} manifest (format {manifest['format']!r})")
    if int(manifest["version"]) > BUNDLE_VERSION:
        raise BundleError(f"{path} is version {manifest['version']}; this code reads up to {BUNDLE_VERSION}")
    for name, entry in manifest["models"].items():
        if entry["file"] not in manifest["files"]:
            raise BundleError(f"{path}: model {name!r} names {entry['file']}, which has no sha256 entry")
    if verify:
        verify_files(directory, manifest)
    return manifest


def model_entry(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    """``manifest["models"][name]``, with a clear error when absent."""
    try:
        return manifest["models"][name]
    except KeyError:
        raise BundleError(f"the bundle has no {name!r} model (it has {sorted(manifest['models'])})") from None


def commit_bundle(staging: str | Path, target: str | Path) -> Path:
    """Replace the bundle folder ``target`` with the finished ``staging`` folder.

    A staging folder on another filesystem is first copied next to ``target``. Then the old
    bundle is renamed aside, the new one renamed in (one rename on one filesystem), the old one
    deleted: a reader sees the old bundle or the new one, never a mix or a half-written one.
    """
    staging, target = Path(staging), Path(target)
    if not (staging / MANIFEST_FILE).is_file():
        raise BundleError(f"{staging} has no {MANIFEST_FILE}: the export did not finish")
    return replace_dir(staging, target)


@dataclass
class LatentLibrary:
    """``library.npz``, loaded: the image latents that retrieve and refine search."""

    packed: np.ndarray
    """uint8 (M, bytes): the latents' bits, packed."""
    code_signs: np.ndarray
    """float32 (M, K): their image codes as signs (``generation.code_signs``), the form searched."""
    image_ids: np.ndarray
    """(M,): the images they come from."""
    bits_per_image: int
    shape: tuple[int, int, int]
    """(C, h, w) of one latent."""
    bit_order: str = "big"

    @classmethod
    def load(cls, path: str | Path, shape: tuple[int, int, int], bit_order: str = "big") -> "LatentLibrary":
        with np.load(path, allow_pickle=False) as data:
            packed, codes, ids = data["bits"], data["codes"], data["image_ids"]
            code_bits = int(data["code_bits"])
        codes = np.unpackbits(codes, axis=1, count=code_bits, bitorder="big")  # (M, K)
        bits = int(np.prod(shape))
        if packed.ndim != 2 or packed.shape[1] != (bits + 7) // 8 or len(packed) != len(codes):
            raise BundleError(f"{path}: latents {packed.shape} / codes {codes.shape} do not fit latents of shape {shape}")
        return cls(packed, code_signs(codes), ids, bits, tuple(shape), bit_order)

    def __len__(self) -> int:
        return len(self.packed)

    def bits(self, rows: np.ndarray) -> np.ndarray:
        """uint8 (len(rows), C, h, w) latents of ``rows``."""
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        flat = np.unpackbits(self.packed[rows], axis=1, count=self.bits_per_image, bitorder=self.bit_order)
        return flat.reshape(len(rows), *self.shape)
