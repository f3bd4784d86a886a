"""The KServe custom predictor: prompts in, images out, Open Inference Protocol v2.

Request (``POST /v2/models/<name>/infer``)::

    inputs:      [{"name": "prompt", "datatype": "BYTES", "shape": [B] or [B, 1], "data": ["a red circle", ...]}]
    parameters:  optional: mode ("retrieve" | "generate" | "refine"; default: retrieve when the bundle
                 carries a latent library, else generate), temperature (>= 0; default 1 for
                 generate and refine from a cell prior, else 0), guidance
                 (classifier-free guidance of the cell prior, 0..max_guidance; default: the model's),
                 seed (int), samples (images per prompt), strength (refine, 0..1)
    outputs:     optional: [{"name": "image"}, {"name": "png"}]; default: "image" only

Response::

    image  UINT8 [B * samples, H, W, 3]   RGB, prompt-major
    png    BYTES [B * samples]            PNG files (base64 text when asked for as JSON, not binary)

Every malformed request is a KServe ``InvalidInput`` (HTTP 400 with ``{"error": "..."}``):
empty or whitespace prompt, prompt over the token limit (or, with ``truncate_long_prompts``,
over ``max_prompt_chars``), invalid UTF-8, wrong input name / datatype / shape, batch over
``max_batch``, unknown output or parameter. ONNX Runtime runs in one worker thread, so the event
loop keeps answering health checks while a batch renders. No torch.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bitlatent.inference import OnnxGenerator, encode_png

from ._kserve import kserve  # first: imports kserve with an empty argv
from kserve.errors import InvalidInput  # noqa: E402, I001
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse  # noqa: E402

__all__ = ["ServingLimits", "BitlatentModel", "PROMPT_INPUT", "IMAGE_OUTPUT", "PNG_OUTPUT"]

log = logging.getLogger(__name__)

PROMPT_INPUT = "prompt"
IMAGE_OUTPUT = "image"
PNG_OUTPUT = "png"
_PARAMETERS = {"mode", "temperature", "guidance", "seed", "samples", "strength", "binary_data_output"}


@dataclass
class ServingLimits:
    """What a request may ask for; everything past it is a 400."""

    max_batch: int = 16
    """Images per request (prompts x samples)."""
    max_prompt_chars: int = 2000
    """Characters per prompt, checked before tokenising."""
    truncate_long_prompts: bool = False
    """False: a prompt over the model's token limit is a 400. True: it is cut (and logged)."""
    max_temperature: float = 10.0
    max_guidance: float = 20.0
    max_body_bytes: int = 1 << 20
    """Largest request body (bytes); enforced by the HTTP layer (``app.RequestGuard``)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class BitlatentModel(kserve.Model):
    """``kserve.Model`` around an ``OnnxGenerator`` (one exported bundle)."""

    def __init__(self, name: str, bundle_dir: str | Path, limits: ServingLimits | None = None,
                 device: str = "auto", precision: str = "auto", threads: int | None = None,
                 spinning: bool = False):  # fmt: skip
        super().__init__(name)
        self.bundle_dir = Path(bundle_dir)
        self.limits = limits or ServingLimits()
        self._options = {"device": device, "precision": precision, "threads": threads, "spinning": spinning}
        self.generator: OnnxGenerator | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="onnxruntime")

    # ------------------------------------------------------------------ lifecycle

    def load(self) -> bool:
        start = time.perf_counter()
        self.generator = OnnxGenerator(self.bundle_dir, max_batch=max(self.limits.max_batch, 1), **self._options)
        self.generator.generate(["warm up"], warn=False)  # first ORT runs allocate; do it before "ready"
        log.info("loaded %s in %.1f s: %s", self.bundle_dir, time.perf_counter() - start, self.generator.describe())
        self.ready = True
        return self.ready

    def stop(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def runtime(self) -> dict[str, Any]:
        """Where and how the model runs, for the v2 model metadata (``app.build_app``): the device,
        the ONNX Runtime providers its sessions really use, precision, decoder batch, modes."""
        if self.generator is None:
            return {}
        described = self.generator.describe()
        return {key: described[key] for key in ("device", "providers", "precision", "decode_batch", "modes")}

    def get_input_types(self) -> list[dict[str, Any]]:
        return [{"name": PROMPT_INPUT, "datatype": "BYTES", "shape": [-1]}]

    def get_output_types(self) -> list[dict[str, Any]]:
        size = self.generator.image_size if self.generator else -1
        return [{"name": IMAGE_OUTPUT, "datatype": "UINT8", "shape": [-1, size, size, 3]},
                {"name": PNG_OUTPUT, "datatype": "BYTES", "shape": [-1]}]  # fmt: skip

    # ------------------------------------------------------------------ validation

    def _prompts(self, request: InferRequest) -> list[str]:
        inputs = list(request.inputs or [])
        names = [i.name for i in inputs]
        if names != [PROMPT_INPUT]:
            raise InvalidInput(f"expected exactly one input named {PROMPT_INPUT!r} (BYTES, shape [batch] or "
                               f"[batch, 1]); got {names}")  # fmt: skip
        tensor = inputs[0]
        if tensor.datatype != "BYTES":
            raise InvalidInput(f"input {PROMPT_INPUT!r} must have datatype BYTES (UTF-8 text), got {tensor.datatype}")
        shape = list(tensor.shape or [])
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or any(not isinstance(d, int) for d in shape):
            raise InvalidInput(f"input {PROMPT_INPUT!r} must have shape [batch] or [batch, 1], got {shape}")
        batch = shape[0]
        if batch < 1:
            raise InvalidInput(f"input {PROMPT_INPUT!r} has no prompt (shape {shape})")
        if batch > self.limits.max_batch:
            raise InvalidInput(f"batch of {batch} prompts is over the limit of {self.limits.max_batch} per request")
        try:
            values = list(np.asarray(tensor.as_numpy(), dtype=object).reshape(-1))
        except Exception as error:  # noqa: BLE001 - whatever the payload was, it is the client's
            raise InvalidInput(f"input {PROMPT_INPUT!r}: data does not match shape {shape}: {error}") from None
        if len(values) != batch:
            raise InvalidInput(f"input {PROMPT_INPUT!r} has {len(values)} values for shape {shape}")
        prompts = []
        for i, value in enumerate(values):
            if isinstance(value, (bytes, bytearray, np.bytes_)):
                try:
                    value = bytes(value).decode("utf-8")
                except UnicodeDecodeError:
                    raise InvalidInput(f"prompt {i} is not valid UTF-8") from None
            if not isinstance(value, str):
                raise InvalidInput(f"prompt {i} must be text, got {type(value).__name__}")
            if not value.strip():
                raise InvalidInput(f"prompt {i} is empty or whitespace only: describe the image in words, e.g. 'a red circle'")
            if len(value) > self.limits.max_prompt_chars:
                raise InvalidInput(f"prompt {i} is {len(value)} characters, over the limit of {self.limits.max_prompt_chars}")
            prompts.append(value)
        return prompts

    def _options_from(self, request: InferRequest) -> dict[str, Any]:
        params = dict(request.parameters or {})
        unknown = set(params) - _PARAMETERS
        if unknown:
            raise InvalidInput(f"unknown request parameter(s) {sorted(unknown)}; known: {sorted(_PARAMETERS - {'binary_data_output'})}")
        assert self.generator is not None
        mode = params.get("mode", "retrieve" if "retrieve" in self.generator.modes else "generate")
        if mode not in self.generator.modes:
            raise InvalidInput(f"mode {mode!r} is not available; this model serves {list(self.generator.modes)}")

        def number(name: str, kind: type, default: Any, lo: float, hi: float) -> Any:
            value = params.get(name, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not float(value).is_integer()):
                raise InvalidInput(f"parameter {name!r} must be {'an integer' if kind is int else 'a number'}, got {value!r}")
            if not lo <= value <= hi:
                raise InvalidInput(f"parameter {name!r} must be in [{lo}, {hi}], got {value}")
            return kind(value)

        return {"mode": mode,
                "temperature": number("temperature", float, self.generator.default_temperature(mode), 0.0,
                                      self.limits.max_temperature),
                "seed": number("seed", int, 0, 0, 2**32 - 1),
                "samples": number("samples", int, 1, 1, self.limits.max_batch),
                "strength": number("strength", float, 0.5, 0.0, 1.0),
                "guidance": number("guidance", float, self.generator.default_guidance, 0.0, self.limits.max_guidance)}  # fmt: skip

    def _outputs(self, request: InferRequest) -> tuple[bool, bool]:
        """(png wanted, png as binary) from the request's ``outputs``."""
        requested = request.request_outputs or []
        known = {IMAGE_OUTPUT, PNG_OUTPUT}
        for out in requested:
            if out.name not in known:
                raise InvalidInput(f"unknown output {out.name!r}; this model returns {sorted(known)}")
        png = next((o for o in requested if o.name == PNG_OUTPUT), None)
        binary = bool(png.binary_data) if png is not None and png.binary_data is not None else bool(request.use_binary_outputs)
        return png is not None, binary

    def _check_tokens(self, prompts: list[str]) -> None:
        assert self.generator is not None
        limit = self.generator.max_prompt_tokens
        counts = self.generator.tokenizer.count_tokens(prompts)
        for i, n in enumerate(counts):
            if n > limit:
                if not self.limits.truncate_long_prompts:
                    raise InvalidInput(f"prompt {i} is {n} tokens, over the model's limit of {limit} "
                                       f"([CLS] and [SEP] included); shorten it")  # fmt: skip
                log.warning("prompt %d: %d tokens, truncated to %d", i, n, limit)

    # ------------------------------------------------------------------ inference

    def _render(self, prompts: list[str], options: dict[str, Any], png: bool) -> tuple[np.ndarray, list[bytes]]:
        assert self.generator is not None
        images = self.generator.generate(prompts, warn=False, **options)  # (N, H, W, 3)
        return images, ([encode_png(image) for image in images] if png else [])

    async def predict(self, payload: InferRequest, headers: dict[str, str] | None = None) -> InferResponse:
        if not isinstance(payload, InferRequest):
            raise InvalidInput("expected an Open Inference Protocol v2 request (POST /v2/models/<name>/infer)")
        prompts = self._prompts(payload)
        options = self._options_from(payload)
        if len(prompts) * options["samples"] > self.limits.max_batch:
            raise InvalidInput(f"{len(prompts)} prompts x {options['samples']} samples = {len(prompts) * options['samples']} "
                               f"images, over the limit of {self.limits.max_batch} per request")  # fmt: skip
        png, png_binary = self._outputs(payload)
        self._check_tokens(prompts)
        loop = asyncio.get_running_loop()
        images, pngs = await loop.run_in_executor(self._executor, self._render, prompts, options, png)

        # numpy data: InferResponse.to_rest encodes each output as JSON or binary, as requested
        outputs = [InferOutput(IMAGE_OUTPUT, list(images.shape), "UINT8", data=images)]
        if png:
            data = np.array(pngs if png_binary else [base64.b64encode(p) for p in pngs], dtype=object)
            outputs.append(InferOutput(PNG_OUTPUT, [len(pngs)], "BYTES", data=data,
                                       parameters=None if png_binary else {"content_encoding": "base64"}))  # fmt: skip
        return InferResponse(
            response_id=payload.id or uuid.uuid4().hex,  # KServe's response model needs an id
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )
