"""Text -> images with ONNX Runtime: ``OnnxGenerator(bundle_dir).generate(prompts)``. No torch.

    prompts -> PromptTokenizer (tokenizer.json)           input_ids, attention_mask int64 (N, L)
            -> text_to_latent.onnx                         bit_logits (N, C, h, w), code_bits (N, K)
            -> generate / retrieve / refine                 bits uint8 (N * samples, C, h, w)
               (``bitlatent.generation``, shared with the torch path; a cell prior's draws
               run prior_context.onnx once and prior.onnx cell by cell: onnx_prior.py)
            -> decoder.onnx                                 images uint8 (N * samples, H, W, 3)

CUDAExecutionProvider is used when onnxruntime-gpu offers it and its sessions really get it
(``device="auto"``; ``providers.open_session`` checks ``session.get_providers()``), with the fp16
models when the bundle has them (``precision="auto"``) and GPU batch sizes; the CPU provider, fp32
and CPU batch sizes otherwise, with a warning when CUDA was listed but did not load.
``device="cuda"`` without a working CUDA provider is a ``ProviderError`` naming what is missing.
``precision="int8"`` runs the bundle's int8 decoder on CPU (faster, a little lower PSNR: the
manifest's ``parity.decoder_int8``, ``bitlatent.export.quantize``) beside the fp32 text model.
"""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bitlatent.core.io import atomic_write_bytes
from bitlatent.generation import (
    MODES, Generation, Prediction, cell_uniforms, check_mode, default_temperature, generate_bits, prompt_keys,
)

from .bundle import MAKE_COMMAND, LIBRARY_FILE, TOKENIZER_FILE, BundleError, LatentLibrary, model_entry, read_manifest
from .onnx_prior import sample_prior_cells
from .prompts import PromptTokenizer, Tokenized
from .providers import CUDA, Placement, open_session, requested_providers

__all__ = ["OnnxGenerator", "Prediction", "Generation", "encode_png", "available_providers", "generate_images",
           "session_options", "cpu_decode_batch"]

DECODE_CACHE_BYTES = 2 << 20
"""CPU decoding works on chunks whose largest activation fits in about this many bytes (one core's L2)."""


def session_options(threads: int | None = None, spinning: bool = False):
    """The ONNX Runtime session options of every bitlatent session (``benchmarks/inference.py``
    measures with these too), each the fastest measured on the decoder (``docs/experiments.md``):
    ORT_ENABLE_ALL (convolutions in the blocked NCHWc layout, SiLU fused into QuickGelu, the head's
    Conv + Sigmoid fused), sequential execution (both graphs are chains), the memory arena and
    memory patterns on. ``threads``: intra-op threads (None: one per physical core). ``spinning``:
    let idle intra-op threads spin-wait for the next op (ORT's own default), for a process that
    owns its cores."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.enable_cpu_mem_arena = True
    options.enable_mem_pattern = True
    options.log_severity_level = 3
    # Off by default: two sessions run one after the other, and threads that spin-wait after their
    # run steal the cores the next session (or a neighbour's process) needs; a process that owns its
    # cores and runs one graph at a time gains from it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    return options


def cpu_decode_batch(manifest: dict[str, Any], max_batch: int) -> int:
    """Latents per decoder call on CPU: as many as keep the largest activation (last stage's
    width x image pixels x 4 bytes per image) within ``DECODE_CACHE_BYTES``, 1 to ``max_batch``.
    With 64x64 images and widths ending in 32 (512 KB per image) that is chunks of 4: activations
    that stay in cache (``docs/experiments.md`` has the timings)."""
    config = (manifest.get("decoder") or {}).get("config") or {}
    size = int(config.get("image_size") or manifest.get("image_size") or 64)
    width = int((config.get("widths") or [32])[-1])
    return max(1, min(int(max_batch), DECODE_CACHE_BYTES // (width * size * size * 4)))


PRECISIONS = ("auto", "fp32", "fp16", "int8")


def _precision(requested: str, models: set[str], use_cuda: bool, bundle_dir: Path) -> str:
    """The precision ``OnnxGenerator`` runs at: "fp32", "fp16" (both models) or "int8" (the decoder)."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {requested!r}")
    has_fp16 = {"decoder_fp16", "text_to_latent_fp16"} <= models
    has_int8 = "decoder_int8" in models
    if requested == "fp16" and not has_fp16:
        raise ValueError(f"{bundle_dir} has no fp16 models (export with export.fp16: true)")
    if requested == "int8":
        if not has_int8:
            raise ValueError(f"{bundle_dir} has no int8 decoder (export with export.int8: true; an int8 "
                             f"decoder under its PSNR floor is left out: see the manifest's parity.decoder_int8)")
        if use_cuda:
            raise ValueError("the int8 decoder is for the CPU provider; on CUDA use fp16 or fp32")
    if requested != "auto":
        return requested
    return "fp16" if use_cuda and has_fp16 else "fp32"


def encode_png(image: np.ndarray, compress_level: int = 1) -> bytes:
    """uint8 (H, W, 3) -> PNG bytes (Pillow; level 1: fast, still lossless)."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    buffer = io.BytesIO()
    Image.fromarray(image, "RGB").save(buffer, format="PNG", compress_level=compress_level)
    return buffer.getvalue()


def available_providers() -> list[str]:
    """The providers this onnxruntime lists (listed is not usable: ``providers.open_session`` checks)."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


class OnnxGenerator:
    """An exported bundle, loaded: tokenizer, text model, decoder, optional latent library.

    Args:
        bundle_dir: the export folder (``manifest.json`` and the files it lists).
        device: "auto" (CUDA when a session really gets it, else the CPU with a warning when CUDA was
            listed), "cpu" or "cuda" (a ``ProviderError`` naming what is missing when CUDA does not load).
        precision: "auto" (fp16 on CUDA when the bundle has it, else fp32), "fp32", "fp16" (both
            models) or "int8" (the decoder, CPU only; the text model stays fp32).
        verify: check every file's sha256 against the manifest before loading.
        threads: ONNX Runtime intra-op threads (None: its default, one per physical core).
        spinning: idle intra-op threads spin-wait (``session_options``): lower latency for a
            process that owns its cores, more CPU burnt; off by default.
        max_batch: rows per ONNX Runtime call (bigger inputs are split).
        decode_batch: latents per decoder call (None: ``cpu_decode_batch`` on CPU, ``max_batch``
            on CUDA); at most ``max_batch``.
    """

    def __init__(self, bundle_dir: str | Path, device: str = "auto", precision: str = "auto",
                 verify: bool = True, threads: int | None = None, max_batch: int = 256,
                 decode_batch: int | None = None, spinning: bool = False):  # fmt: skip
        import onnxruntime as ort

        os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
        self.bundle_dir = Path(bundle_dir)
        self.manifest: dict[str, Any] = read_manifest(self.bundle_dir, verify=verify)
        models = set(self.manifest["models"])
        # CUDA asked for (device allows it and onnxruntime lists it): the settings assume it until
        # the first session says where it really runs.
        asks_cuda = CUDA in requested_providers(device, ort.get_available_providers())
        self.precision = _precision(precision, models, asks_cuda, self.bundle_dir)
        options = session_options(threads, spinning)
        self.text_session, self.placement = self._open_text(options, device)
        self.device = "cuda" if self.placement.on_cuda else "cpu"
        """Where the sessions run; the decoder and prior are opened on it, so all sessions agree."""
        if asks_cuda and not self.placement.on_cuda:  # "auto" fell back to the CPU: CPU settings
            cpu_precision = _precision(precision, models, False, self.bundle_dir)
            if cpu_precision != self.precision:
                self.precision = cpu_precision
                self.text_session, _ = self._open_text(options, self.device)
        self.providers = list(self.placement.providers)
        """The providers the sessions really run on (``session.get_providers()``)."""
        on_cuda = self.placement.on_cuda
        self.max_batch = int(max_batch)
        if decode_batch is not None and int(decode_batch) < 1:
            raise ValueError(f"decode_batch must be >= 1, got {decode_batch}")
        self.decode_batch = min(int(decode_batch), self.max_batch) if decode_batch is not None else (
            self.max_batch if on_cuda else cpu_decode_batch(self.manifest, self.max_batch))  # fmt: skip

        suffix = f"_{self.precision}" if self.precision != "fp32" else ""
        self._decoder_entry = model_entry(self.manifest, "decoder" + suffix)
        self.decoder_session, _ = open_session(self.bundle_dir / self._decoder_entry["file"], options, self.device)
        self._text_outputs = [o.name for o in self.text_session.get_outputs()]
        self.prior_session = self.prior_context_session = None
        if "prior" in models and "prior_tokens" in self._text_outputs:
            if "prior_context" not in models:
                raise BundleError(f"{self.bundle_dir} has a version-{self.manifest['version']} cell prior, which "
                                  f"read the caption at every cell; this bitlatent runs prior_context.onnx + "
                                  f"prior.onnx: export the bundle again with `{MAKE_COMMAND}`")  # fmt: skip
            # One thread: a step is ~120 tiny ops on one cell; waking a second thread for each costs
            # more than it saves.
            prior_options = session_options(1, spinning)
            self.prior_context_session, self.prior_session = (
                open_session(self.bundle_dir / model_entry(self.manifest, name)["file"], prior_options, self.device)[0]
                for name in ("prior_context", "prior"))  # fmt: skip

        spec = self.manifest["latent_spec"]
        self.latent_shape = (int(spec["bits_per_cell"]), int(spec["h"]), int(spec["w"]))
        self.image_size = int(self.manifest["image_size"])
        tok = self.manifest["tokenizer"]
        self.tokenizer = PromptTokenizer(self.bundle_dir / tok.get("file", TOKENIZER_FILE), int(self.manifest["max_prompt_tokens"]),
                                         pad_id=tok.get("pad_id"), sep_id=tok.get("sep_id"))  # fmt: skip
        self.library: LatentLibrary | None = None
        lib = self.manifest.get("library")
        if lib:
            self.library = LatentLibrary.load(self.bundle_dir / lib.get("file", LIBRARY_FILE), self.latent_shape, spec.get("bit_order", "big"))

    def _open_text(self, options: Any, device: str) -> tuple[Any, Placement]:
        """The text model at ``self.precision`` on ``device``, and where it really runs."""
        self._text_entry = model_entry(self.manifest, "text_to_latent" + ("_fp16" if self.precision == "fp16" else ""))
        return open_session(self.bundle_dir / self._text_entry["file"], options, device)

    # ------------------------------------------------------------------ properties

    @property
    def max_prompt_tokens(self) -> int:
        return self.tokenizer.max_length

    @property
    def modes(self) -> tuple[str, ...]:
        """The modes this bundle supports: retrieve and refine need a latent library."""
        return MODES if self.library is not None and "code_bits" in self._text_outputs else ("generate",)

    def describe(self) -> dict[str, Any]:
        """What is loaded and where it runs: ``providers`` are the ones the sessions really use."""
        return {"bundle": str(self.bundle_dir), "device": self.device, "providers": self.providers,
                "precision": self.precision, "decode_batch": self.decode_batch,
                "models": {"decoder": self._decoder_entry["file"], "text_to_latent": self._text_entry["file"]},
                "image_size": self.image_size, "latent_shape": list(self.latent_shape),
                "max_prompt_tokens": self.max_prompt_tokens, "modes": list(self.modes),
                "cell_prior": self.prior_session is not None,
                "library_size": len(self.library) if self.library is not None else 0}  # fmt: skip

    # ------------------------------------------------------------------ steps

    def tokenize(self, prompts: str | Sequence[str], warn: bool = True) -> Tokenized:
        return self.tokenizer(prompts, warn=warn)

    def predict(self, prompts: str | Sequence[str] | Tokenized, warn: bool = True) -> Prediction:
        """Prompts (or their tokens) -> bit logits (N, C, h, w), text codes (N, K) and, with a cell
        prior, the prior's token states (N, L, d)."""
        tokens = prompts if isinstance(prompts, Tokenized) else self.tokenize(prompts, warn=warn)
        has_codes, has_prior = "code_bits" in self._text_outputs, self.prior_session is not None
        names = ["bit_logits"] + (["code_bits"] if has_codes else []) + (["prior_tokens"] if has_prior else [])
        logits, codes, prior_tokens = [], [], []
        full_length = tokens.input_ids.shape[1]
        for lo in range(0, len(tokens.input_ids), self.max_batch):
            ids, mask = tokens.input_ids[lo : lo + self.max_batch], tokens.attention_mask[lo : lo + self.max_batch]
            L = max(int(mask.sum(1).max()), 1)  # a chunk pads only to its own longest prompt
            feeds = {"input_ids": np.ascontiguousarray(ids[:, :L]), "attention_mask": np.ascontiguousarray(mask[:, :L])}
            out = self.text_session.run(names, feeds)
            logits.append(out[0])
            if has_codes:
                codes.append(out[1])
            if has_prior:
                states = out[-1].astype(np.float32, copy=False) * mask[:, :L, None].astype(np.float32)  # (b, L, d), 0 on padding
                prior_tokens.append(np.pad(states, ((0, 0), (0, full_length - L), (0, 0))))
        return Prediction(np.concatenate(logits).astype(np.float32, copy=False),
                          np.concatenate(codes) if codes else None, tokens,
                          np.concatenate(prior_tokens) if prior_tokens else None)  # fmt: skip

    @property
    def default_guidance(self) -> float:
        """The text model's ``prior_guidance`` (classifier-free guidance of generate; 1: none)."""
        return float((self.manifest.get("text_model") or {}).get("prior_guidance", 1.0))

    def default_temperature(self, mode: str) -> float:
        """``generation.default_temperature`` for this bundle (1 for generate / refine from a cell prior, else 0)."""
        return default_temperature(mode, self.prior_session is not None)

    def decode(self, bits: np.ndarray) -> np.ndarray:
        """Latent bits uint8 (n, C, h, w) in {0, 1} -> images uint8 (n, H, W, 3)."""
        bits = np.ascontiguousarray(bits, dtype=np.uint8)
        if bits.ndim != 4 or bits.shape[1:] != self.latent_shape:
            raise ValueError(f"bits must be (n, {', '.join(map(str, self.latent_shape))}), got {bits.shape}")
        if bits.size and bits.max() > 1:
            raise ValueError("bits must be 0 or 1")
        step = self.decode_batch
        images = [self.decoder_session.run(["image"], {"bits": bits[lo : lo + step]})[0]
                  for lo in range(0, len(bits), step)]  # fmt: skip
        return np.concatenate(images) if images else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)

    def generate_bits(self, prompts: str | Sequence[str], mode: str = "generate", *, temperature: float | None = None,
                      seed: int = 0, samples: int = 1, strength: float = 0.5, warn: bool = True,
                      guidance: float | None = None) -> Generation:  # fmt: skip
        """Prompts -> latent bits uint8 (N * samples, C, h, w), prompt-major (``generation.generate_bits``).
        ``temperature`` None: ``default_temperature(mode)``; ``guidance`` (generate / refine from a
        cell prior) None: ``default_guidance``."""
        check_mode(mode)
        if mode not in self.modes:
            raise ValueError(f"mode {mode!r} needs a latent library in the bundle; this bundle supports {self.modes}")
        temperature = self.default_temperature(mode) if temperature is None else float(temperature)
        guidance = self.default_guidance if guidance is None else float(guidance)
        if samples < 1:  # before the text model runs
            raise ValueError(f"samples must be >= 1, got {samples}")
        pred = self.predict(prompts, warn=warn)

        def draw_prior(start: np.ndarray | None, strength: float) -> np.ndarray:
            return self._sample_prior(pred, temperature, seed, samples, guidance, start, strength)

        library = self.library
        generation = generate_bits(mode, pred, samples=samples, temperature=temperature, seed=seed, strength=strength,
                                   library_signs=None if library is None else library.code_signs,
                                   library_latents=None if library is None else library.bits,
                                   draw_prior=None if self.prior_session is None else draw_prior)  # fmt: skip
        return dataclasses.replace(generation, truncated=pred.tokens.truncated)

    def _sample_prior(self, pred: Prediction, temperature: float, seed: int, samples: int, guidance: float,
                      start: np.ndarray | None = None, strength: float = 1.0) -> np.ndarray:  # fmt: skip
        """Latents drawn from the cell prior, prompt-major, in chunks of at most ``max_batch`` rows;
        ``start`` (N * samples, C, h, w): refined instead (``sample_prior_cells``)."""
        step = max(1, self.max_batch // (samples * (2 if guidance != 1.0 else 1)))
        mask = pred.tokens.attention_mask
        steps = self.latent_shape[1] * self.latent_shape[2]
        uniforms = cell_uniforms(seed, samples, prompt_keys(pred.tokens.input_ids, mask), steps)  # (N * S, T)
        rows = [slice(lo * samples, (lo + step) * samples) for lo in range(0, len(mask), step)]  # latents per chunk
        chunks = [sample_prior_cells(self.prior_context_session, self.prior_session, pred.prior_tokens[lo : lo + step],
                                     mask[lo : lo + step],
                                     self.latent_shape, temperature, uniforms[part], samples, guidance,
                                     None if start is None else start[part], strength)
                  for lo, part in zip(range(0, len(mask), step), rows)]  # fmt: skip
        return np.concatenate(chunks)

    def generate(self, prompts: str | Sequence[str], mode: str = "generate", *, temperature: float | None = None,
                 seed: int = 0, samples: int = 1, strength: float = 0.5, warn: bool = True,
                 guidance: float | None = None) -> np.ndarray:  # fmt: skip
        """Prompts -> images uint8 (N * samples, H, W, 3), prompt-major.

        ``mode``: "generate" (drawn from the cell prior when the bundle has one, else the predicted
        bits; sampled when ``temperature > 0``; None: ``default_temperature``), "retrieve" or
        "refine" (need a latent library in the bundle). An empty or whitespace-only prompt is a
        ``ValueError``; a prompt over the token limit is truncated with a ``UserWarning``.
        """
        gen = self.generate_bits(prompts, mode, temperature=temperature, seed=seed, samples=samples,
                                 strength=strength, warn=warn, guidance=guidance)  # fmt: skip
        return self.decode(gen.bits)

    def generate_png(self, prompts: str | Sequence[str], **kwargs: Any) -> list[bytes]:
        """``generate`` with each image encoded as PNG bytes."""
        return [encode_png(image) for image in self.generate(prompts, **kwargs)]



def generate_images(bundle_dir: str | Path, prompts: str | Sequence[str], output_dir: str | Path, *,
                    mode: str = "generate", temperature: float | None = None, seed: int = 0, samples: int = 1,
                    strength: float = 0.5, device: str = "auto", precision: str = "auto",
                    guidance: float | None = None) -> list[Path]:  # fmt: skip
    """``bitlatent generate`` without click: render prompts with a bundle, write one PNG per image.

    Files are ``<output_dir>/<prompt number>_<sample number>.png`` (e.g. ``000_00.png``), each
    written atomically. Returns their paths, prompt-major.
    """
    generator = OnnxGenerator(bundle_dir, device=device, precision=precision)
    images = generator.generate(prompts, mode, temperature=temperature, seed=seed, samples=samples, strength=strength,
                                guidance=guidance)
    folder = Path(output_dir)
    return [atomic_write_bytes(folder / f"{row // samples:03d}_{row % samples:02d}.png",
                               encode_png(image, compress_level=6)) for row, image in enumerate(images)]  # fmt: skip
