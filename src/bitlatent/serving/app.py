"""The HTTP server: KServe's v2 dataplane and endpoints around ``BitlatentModel``, on uvicorn.

KServe's ``ModelServer`` binds 0.0.0.0 (hard-coded), parses ``sys.argv`` and installs signal
handlers, so this module assembles the same pieces itself: a fresh FastAPI app, KServe's
``DataPlane`` and ``register_v2_endpoints``, KServe's error handlers, and uvicorn bound to
``host`` (127.0.0.1 unless told otherwise). Endpoints::

    GET  /v2/health/live  /v2/health/ready  /v2/models/<name>/ready     health and readiness
    GET  /v2  /v2/models/<name>                                         server / model metadata
                                                                        (the model's: platform
                                                                        "onnxruntime_onnx" and
                                                                        "parameters" with the
                                                                        providers really in use)
    POST /v2/models/<name>/infer                                        Open Inference Protocol v2
    GET  /metrics                                                       Prometheus

``RequestGuard`` sits in front: a body over ``max_body_bytes``, malformed JSON, or an infer
request whose structure is wrong gets a 400 ``{"error": "..."}`` before KServe parses it
(KServe would answer some of these with a 500). The model-repository load/unload endpoints
are left out: a serving pod has one model and nobody should unload it remotely.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from ._kserve import kserve  # noqa: F401  (argv-safe import first)
from .predictor import BitlatentModel, ServingLimits

__all__ = ["RequestGuard", "build_app", "serve", "ServerThread", "start_server_thread"]

log = logging.getLogger(__name__)

INFERENCE_HEADER = b"inference-header-content-length"
_DRAIN_LIMIT = 64 << 20  # an oversize body is read (and dropped) up to this, so the client gets the 400


async def _send_json(send, status: int, payload: dict[str, Any]) -> None:
    body = orjson.dumps(payload)
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})


def _check_bytes_tensor(name: str, raw: bytes) -> str | None:
    """A binary BYTES tensor is a run of (uint32 little-endian length, bytes); each must be UTF-8
    (KServe would decode it later and answer a 500)."""
    offset, index = 0, 0
    while offset < len(raw):
        if offset + 4 > len(raw):
            return f"input {name!r}: truncated binary BYTES element {index}"
        size = int.from_bytes(raw[offset : offset + 4], "little")
        item = raw[offset + 4 : offset + 4 + size]
        if len(item) != size:
            return f"input {name!r}: binary BYTES element {index} claims {size} bytes, {len(item)} left"
        try:
            item.decode("utf-8")
        except UnicodeDecodeError:
            return f"input {name!r}: element {index} is not valid UTF-8"
        offset, index = offset + 4 + size, index + 1
    return None


def _check_infer_structure(request: Any, binary: bytes) -> str | None:
    """A reason why ``request`` (parsed JSON, followed by ``binary``) is not a v2 infer request, or None."""
    binary_bytes = len(binary)
    if not isinstance(request, dict):
        return "the request body must be a JSON object"
    for key, kind in (("id", str), ("parameters", dict), ("outputs", list)):
        if key in request and request[key] is not None and not isinstance(request[key], kind):
            return f"{key!r} must be a {kind.__name__}"
    inputs = request.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        return "'inputs' must be a non-empty list of tensors"
    declared = 0
    for i, tensor in enumerate(inputs):
        if not isinstance(tensor, dict):
            return f"inputs[{i}] must be an object with name, datatype, shape and data"
        if not isinstance(tensor.get("name"), str) or not isinstance(tensor.get("datatype"), str):
            return f"inputs[{i}] needs a string 'name' and 'datatype'"
        shape = tensor.get("shape")
        if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
            return f"inputs[{i}] ({tensor['name']}): 'shape' must be a list of non-negative integers, got {shape!r}"
        params = tensor.get("parameters") or {}
        if not isinstance(params, dict):
            return f"inputs[{i}] ({tensor['name']}): 'parameters' must be an object"
        if "data" in tensor:
            if not isinstance(tensor["data"], list):
                return f"inputs[{i}] ({tensor['name']}): 'data' must be a list"
        elif isinstance(params.get("binary_data_size"), int) and params["binary_data_size"] >= 0:
            size = params["binary_data_size"]
            if tensor["datatype"] == "BYTES" and declared + size <= binary_bytes:
                problem = _check_bytes_tensor(tensor["name"], binary[declared : declared + size])
                if problem:
                    return problem
            declared += size
        else:
            return f"inputs[{i}] ({tensor['name']}) has neither 'data' nor a binary_data_size"
    if declared != binary_bytes:
        return f"the inputs declare {declared} bytes of binary data, the body carries {binary_bytes}"
    for j, out in enumerate(request.get("outputs") or []):
        if not isinstance(out, dict) or not isinstance(out.get("name"), str):
            return f"outputs[{j}] must be an object with a string 'name'"
    return None


class RequestGuard:
    """ASGI middleware: body size limit, JSON well-formedness and v2 request structure -> 400.

    It also lets a JSON body without a Content-Type through as JSON (tritonclient's JSON mode
    sends none, and KServe would take the body for binary data without its header).
    """

    def __init__(self, app, max_body_bytes: int):
        self.app = app
        self.max_body_bytes = int(max_body_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        headers = dict(scope["headers"])
        limit = self.max_body_bytes
        length = headers.get(b"content-length")
        too_big = length is not None and length.isdigit() and int(length) > limit
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            more = message.get("more_body", False)
            if size > limit:
                too_big = True
            if too_big:
                if size > _DRAIN_LIMIT:
                    break
                continue  # drop it, keep reading so the client sees the answer
            chunks.append(body)
        if too_big:
            return await _send_json(send, 400, {"error": f"request body of {size if not length else int(length)} bytes is over "
                                                         f"the limit of {limit} bytes"})  # fmt: skip
        body = b"".join(chunks)
        if scope["path"].rstrip("/").endswith("/infer"):
            error, scope = self._check_infer(scope, headers, body)
            if error:
                return await _send_json(send, 400, {"error": error})

        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)

    @staticmethod
    def _check_infer(scope, headers: dict[bytes, bytes], body: bytes):
        header = headers.get(INFERENCE_HEADER)
        if header is not None:
            if not header.isdigit() or int(header) > len(body):
                return f"Inference-Header-Content-Length {header.decode(errors='replace')!r} does not fit a body of {len(body)} bytes", scope
            json_part, binary = body[: int(header)], body[int(header) :]
        else:
            json_part, binary = body, b""
        try:
            request = orjson.loads(json_part)
        except orjson.JSONDecodeError as error:
            return f"malformed JSON in the request body: {error}", scope
        reason = _check_infer_structure(request, binary)
        if reason:
            return f"bad Open Inference Protocol v2 request: {reason}", scope
        if header is None and not headers.get(b"content-type", b"").startswith(b"application/json"):
            fixed = [(k, v) for k, v in scope["headers"] if k != b"content-type"] + [(b"content-type", b"application/json")]
            scope = {**scope, "headers": fixed}
        return None, scope


def _with_runtime(metadata, model: BitlatentModel):
    """KServe's model-metadata endpoint plus where the model runs: ``platform`` "onnxruntime_onnx"
    (Triton's name for ONNX Runtime models; KServe leaves it empty) and ``parameters`` =
    ``BitlatentModel.runtime()`` (device, the providers its sessions really use, precision, ...)."""

    async def model_metadata(model_name: str) -> dict[str, Any]:
        response = (await metadata(model_name)).model_dump(exclude_none=True)
        return {**response, "platform": "onnxruntime_onnx", "parameters": model.runtime()}

    return model_metadata


def build_app(model: BitlatentModel, max_body_bytes: int | None = None):
    """A FastAPI app serving ``model`` (loaded) through KServe's v2 endpoints, behind ``RequestGuard``."""
    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse
    from kserve import errors
    from kserve.model_repository import ModelRepository
    from kserve.protocol.dataplane import DataPlane
    from kserve.protocol.rest import v2_datamodels as dm
    from kserve.protocol.rest.server import metrics_handler
    from kserve.protocol.rest.v2_endpoints import V2Endpoints

    repository = ModelRepository()
    repository.update(model)
    dataplane = DataPlane(model_registry=repository)
    app = FastAPI(title="bitlatent", docs_url=None, redoc_url=None)
    # KServe's register_v2_endpoints, less the repository load/unload routes.
    v2 = V2Endpoints(dataplane, model_repository_extension=None)
    for path, endpoint, response_model, method in (
        ("/v2", v2.metadata, dm.ServerMetadataResponse, "GET"),
        ("/v2/health/live", v2.live, dm.ServerLiveResponse, "GET"),
        ("/v2/health/ready", v2.ready, dm.ServerReadyResponse, "GET"),
        ("/v2/models", v2.models, dm.ListModelsResponse, "GET"),
        ("/v2/models/{model_name}", _with_runtime(v2.model_metadata, model), None, "GET"),
        ("/v2/models/{model_name}/ready", v2.model_ready, dm.ModelReadyResponse, "GET"),
        ("/v2/models/{model_name}/infer", v2.infer, None, "POST"),
    ):
        app.add_api_route(path, endpoint, response_model=response_model, methods=[method])
    app.add_api_route("/", dataplane.live, methods=["GET"])
    app.add_api_route("/metrics", metrics_handler, methods=["GET"])

    def client_error(status: int, message=str):
        async def handler(_, exc):  # the client's mistake: one log line, not a traceback
            log.warning("%d: %s", status, message(exc))
            return JSONResponse(status_code=status, content={"error": message(exc)})

        return handler

    for kind, handler in (
        (errors.InvalidInput, client_error(400)),
        (RequestValidationError, client_error(400, lambda exc: f"invalid request: {exc.errors()}")),
        (errors.ModelNotFound, client_error(404)),
        (errors.InferenceError, errors.inference_error_handler),
        (errors.ModelNotReady, errors.model_not_ready_handler),
        (NotImplementedError, errors.not_implemented_error_handler),
        (errors.ServerNotLive, errors.server_not_live_handler),
        (errors.ServerNotReady, errors.server_not_ready_handler),
        (Exception, errors.generic_exception_handler),
    ):
        app.add_exception_handler(kind, handler)
    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes or model.limits.max_body_bytes)
    return app


def _uvicorn_server(app, host: str, port: int, access_log: bool, log_level: str = "info"):
    import uvicorn

    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=access_log, log_level=log_level,
                            timeout_keep_alive=65, timeout_graceful_shutdown=10, server_header=False)  # fmt: skip
    return uvicorn.Server(config)


def _model(bundle_dir: str | Path, name: str, limits: ServingLimits | None, **options: Any) -> BitlatentModel:
    model = BitlatentModel(name, bundle_dir, limits, **options)
    model.load()
    return model


def serve(bundle_dir: str | Path, host: str = "127.0.0.1", port: int = 8080, *, name: str = "bitlatent",
          limits: ServingLimits | None = None, device: str = "auto", precision: str = "auto",
          threads: int | None = None, spinning: bool = False, access_log: bool = False) -> None:  # fmt: skip
    """Load the bundle and serve it until SIGINT / SIGTERM (blocking)."""
    model = _model(bundle_dir, name, limits, device=device, precision=precision, threads=threads, spinning=spinning)
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("listening on %s: reachable from other machines (no authentication)", host)
    log.info("serving %r on http://%s:%d (POST /v2/models/%s/infer)", name, host, port, name)
    try:
        _uvicorn_server(build_app(model), host, port, access_log).run()
    finally:
        model.stop()


@dataclass
class ServerThread:
    """A server running in a background thread of this process (tests, benchmarks)."""

    server: Any
    thread: threading.Thread
    model: BitlatentModel
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def stop(self, timeout: float = 15.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.model.stop()

    def __enter__(self) -> "ServerThread":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def start_server_thread(bundle_dir: str | Path, host: str = "127.0.0.1", port: int = 0, *, name: str = "bitlatent",
                        limits: ServingLimits | None = None, timeout: float = 60.0, **options: Any) -> ServerThread:  # fmt: skip
    """Start ``serve`` in a daemon thread; returns once it accepts connections. ``port=0``: a free port."""
    model = _model(bundle_dir, name, limits, **options)
    server = _uvicorn_server(build_app(model), host, port, access_log=False, log_level="warning")
    thread = threading.Thread(target=server.run, name="bitlatent-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            model.stop()
            raise RuntimeError(f"the server did not start on {host}:{port} within {timeout} s")
        time.sleep(0.02)
    bound = server.servers[0].sockets[0].getsockname()[1] if port == 0 else port
    return ServerThread(server, thread, model, host, int(bound))
