"""The real server (``python -m bitlatent.serving``) on loopback, called with ``tritonclient.http``
and, for what tritonclient cannot send (malformed JSON, oversize bodies), a raw HTTP client.
Every bad request must get a 400 with a clear message, and the server must keep serving."""

from __future__ import annotations

import http.client
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
from PIL import Image

from tests.export.tiny import MAX_PROMPT_TOKENS, PROJECT

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MODEL = "bitlatent"
MAX_BATCH = 4
MAX_BODY = 64 * 1024
START_TIMEOUT = 90


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tiny):
    """The server as a subprocess on 127.0.0.1 (default host), stopped whatever happens."""
    port = free_port()
    env = {**os.environ, "ORT_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tiny.workdir / f"server-{port}.log", "w+")
    proc = subprocess.Popen(
        [sys.executable, "-m", "bitlatent.serving", "--bundle", str(tiny.bundle), "--port", str(port),
         "--device", "cpu", "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY), "--threads", "1"],
        cwd=PROJECT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    client = httpclient.InferenceServerClient(f"127.0.0.1:{port}", network_timeout=30)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"the server exited with {proc.returncode}:\n{log.read()[-3000:]}")
            try:
                if client.is_server_ready():
                    break
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the server was not ready within {START_TIMEOUT} s")
            time.sleep(0.2)
        yield {"proc": proc, "port": port, "client": client, "log": log}
    finally:
        client.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        log.close()


def prompt_input(prompts, binary=True, shape=None):
    data = np.array([p.encode() if isinstance(p, str) else p for p in prompts], dtype=object)
    tensor = httpclient.InferInput("prompt", shape or [len(prompts)], "BYTES")
    tensor.set_data_from_numpy(data.reshape(shape or [len(prompts)]), binary_data=binary)
    return tensor


def infer(server, inputs, **kwargs):
    return server["client"].infer(MODEL, inputs, **kwargs)


def bad(server, match, inputs, **kwargs):
    with pytest.raises(InferenceServerException) as info:
        infer(server, inputs, **kwargs)
    assert info.value.status() == "400", info.value
    assert match in info.value.message(), info.value.message()


def raw_post(port, body: bytes, headers=None, path=f"/v2/models/{MODEL}/infer"):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json", **(headers or {})})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ----------------------------------------------------------------------------- health and contract


def test_binds_loopback_only_and_answers_health_checks(server):
    proc = psutil.Process(server["proc"].pid)
    connections = getattr(proc, "net_connections", None) or proc.connections  # psutil < 6: connections()
    addresses = {c.laddr.ip for c in connections("tcp") if c.status == "LISTEN"}
    assert addresses == {"127.0.0.1"}
    client = server["client"]
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(MODEL)
    meta = client.get_model_metadata(MODEL)
    assert meta["inputs"] == [{"name": "prompt", "datatype": "BYTES", "shape": [-1]}]
    assert meta["outputs"][0] == {"name": "image", "datatype": "UINT8", "shape": [-1, 16, 16, 3]}
    # where it really runs (--device cpu): the sessions' own providers, in the metadata and the log
    assert meta["platform"] == "onnxruntime_onnx"
    assert meta["parameters"]["device"] == "cpu" and meta["parameters"]["providers"] == ["CPUExecutionProvider"]
    assert meta["parameters"]["precision"] == "fp32"
    server["log"].seek(0)
    assert "'providers': ['CPUExecutionProvider']" in server["log"].read()


def test_prompt_in_image_out_binary(server, tiny):
    from bitlatent.inference import OnnxGenerator

    prompts = ["a small red circle in the top left corner", "a blue square"]
    result = infer(server, [prompt_input(prompts)], outputs=[httpclient.InferRequestedOutput("image")])
    images = result.as_numpy("image")
    assert images.shape == (2, 16, 16, 3) and images.dtype == np.uint8
    generator = OnnxGenerator(tiny.bundle, device="cpu")
    assert "retrieve" in generator.modes  # the bundle carries a library, so the server retrieves by default
    np.testing.assert_array_equal(images, generator.generate(prompts, "retrieve"))
    assert result.get_response()["id"]  # a request without an id still gets one


def test_json_mode_with_and_without_content_type(server):
    tensor = prompt_input(["a red circle"], binary=False, shape=[1, 1])
    out = [httpclient.InferRequestedOutput("image", binary_data=False)]
    a = infer(server, [tensor], outputs=out, headers={"Content-Type": "application/json"}, request_id="req-7")
    assert a.as_numpy("image").shape == (1, 16, 16, 3) and a.get_response()["id"] == "req-7"
    b = infer(server, [tensor], outputs=out)  # tritonclient sends no Content-Type in JSON mode
    np.testing.assert_array_equal(a.as_numpy("image"), b.as_numpy("image"))


def test_png_output_binary_and_base64(server):
    result = infer(server, [prompt_input(["a red circle", "a green triangle"])],
                   outputs=[httpclient.InferRequestedOutput("image"), httpclient.InferRequestedOutput("png")])  # fmt: skip
    pngs, images = result.as_numpy("png"), result.as_numpy("image")
    assert pngs.shape == (2,)
    for png, image in zip(pngs, images):
        np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), image)
    status, body = raw_post(server["port"], json.dumps({
        "inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["a red circle"]}],
        "outputs": [{"name": "png", "parameters": {"binary_data": False}}]}).encode())  # fmt: skip
    assert status == 200
    out = json.loads(body)["outputs"][0]
    assert out["parameters"]["content_encoding"] == "base64"
    import base64

    assert base64.b64decode(out["data"][0])[:4] == b"\x89PNG"


def test_request_parameters_select_mode_samples_and_seed(server):
    tensor = prompt_input(["a red circle"])
    one = infer(server, [tensor], parameters={"mode": "generate", "temperature": 1.0, "seed": 3, "samples": 2})
    two = infer(server, [tensor], parameters={"mode": "generate", "temperature": 1.0, "seed": 3, "samples": 2})
    assert one.as_numpy("image").shape == (2, 16, 16, 3)
    np.testing.assert_array_equal(one.as_numpy("image"), two.as_numpy("image"))
    assert infer(server, [tensor], parameters={"mode": "retrieve", "samples": 3}).as_numpy("image").shape[0] == 3
    assert infer(server, [tensor], parameters={"mode": "refine", "strength": 0.5}).as_numpy("image").shape[0] == 1


# ----------------------------------------------------------------------------- bad requests


def test_bad_prompts_get_400(server):
    bad(server, "empty or whitespace", [prompt_input([""])])
    bad(server, "prompt 1 is empty or whitespace", [prompt_input(["fine", " \t\n "])])
    bad(server, f"over the model's limit of {MAX_PROMPT_TOKENS}", [prompt_input(["a red circle " * 10])])
    bad(server, "characters, over the limit", [prompt_input(["x" * 3000])])
    bad(server, "element 0 is not valid UTF-8", [prompt_input([b"\xff\xfe bad"])])


def test_wrong_datatype_shape_name_and_batch_get_400(server):
    floats = httpclient.InferInput("prompt", [1], "FP32")
    floats.set_data_from_numpy(np.array([1.0], np.float32))
    bad(server, "must have datatype BYTES", [floats])
    bad(server, "must have shape [batch] or [batch, 1]", [prompt_input(["a", "b", "c", "d"], shape=[2, 2])])
    other = httpclient.InferInput("text", [1], "BYTES")
    other.set_data_from_numpy(np.array([b"a red circle"], dtype=object))
    bad(server, "exactly one input named 'prompt'", [other])
    bad(server, "exactly one input named 'prompt'", [prompt_input(["a"]), other])
    bad(server, f"over the limit of {MAX_BATCH}", [prompt_input(["a red circle"] * (MAX_BATCH + 1))])
    bad(server, "images, over the limit", [prompt_input(["a", "b"])], parameters={"samples": 3})


def test_bad_parameters_and_outputs_get_400(server):
    tensor = prompt_input(["a red circle"])
    bad(server, "'temperature' must be in", [tensor], parameters={"temperature": -1.0})
    bad(server, "'seed' must be an integer", [tensor], parameters={"seed": "seven"})
    bad(server, "mode 'dream' is not available", [tensor], parameters={"mode": "dream"})
    bad(server, "unknown request parameter", [tensor], parameters={"steps": 50})
    bad(server, "unknown output 'mask'", [tensor], outputs=[httpclient.InferRequestedOutput("mask")])


def test_malformed_bodies_get_400_from_a_raw_client(server):
    port = server["port"]
    cases = [
        (b"{not json", "malformed JSON"),
        (b"[1, 2, 3]", "must be a JSON object"),
        (b'{"inputs": "prompt"}', "'inputs' must be a non-empty list"),
        (b'{"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": ["one"], "data": ["a"]}]}', "'shape' must be"),
        (b'{"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1]}]}', "neither 'data' nor"),
    ]
    for body, message in cases:
        status, answer = raw_post(port, body)
        assert status == 400 and message in json.loads(answer)["error"], (body, answer)
    # binary extension: the header says more JSON than the body holds
    status, answer = raw_post(port, b'{"inputs": []}', {"Inference-Header-Content-Length": "999"})
    assert status == 400 and "does not fit" in json.loads(answer)["error"]


def test_oversize_bodies_get_400(server):
    port = server["port"]
    big = json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["x" * (2 * MAX_BODY)]}]}).encode()
    status, answer = raw_post(port, big)
    assert status == 400 and f"over the limit of {MAX_BODY} bytes" in json.loads(answer)["error"]
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)  # chunked: no Content-Length to check
    try:
        conn.request("POST", f"/v2/models/{MODEL}/infer", body=iter([big[i : i + 8192] for i in range(0, len(big), 8192)]),
                     headers={"Content-Type": "application/json"}, encode_chunked=True)  # fmt: skip
        response = conn.getresponse()
        assert response.status == 400 and b"over the limit" in response.read()
    finally:
        conn.close()


def test_unknown_model_is_404_and_repository_control_is_absent(server):
    with pytest.raises(InferenceServerException) as info:
        server["client"].infer("other", [prompt_input(["a"])])
    assert info.value.status() == "404"
    status, _ = raw_post(server["port"], b"", path=f"/v2/repository/models/{MODEL}/unload")
    assert status == 404


def test_the_server_keeps_serving_after_every_bad_request(server):
    """Runs last in this module: everything above threw bad requests at the same process."""
    assert server["proc"].poll() is None
    assert server["client"].is_server_ready()
    result = infer(server, [prompt_input(["a red circle"] * MAX_BATCH)])
    assert result.as_numpy("image").shape == (MAX_BATCH, 16, 16, 3)
    server["log"].flush()
    server["log"].seek(0)
    log = server["log"].read()
    assert "Traceback" not in log, log[-3000:]  # client errors are one-line warnings, not crashes
    assert "Uvicorn running on http://127.0.0.1:" in log


# ----------------------------------------------------------------------------- in-process, other limits


def test_thread_server_with_truncation_and_a_port_of_its_own(tiny):
    from bitlatent.serving.app import start_server_thread
    from bitlatent.serving.predictor import ServingLimits

    limits = ServingLimits(max_batch=2, truncate_long_prompts=True)
    with start_server_thread(tiny.bundle, port=0, limits=limits, device="cpu", threads=1) as srv:
        client = httpclient.InferenceServerClient(srv.url)
        try:
            result = client.infer(MODEL, [prompt_input(["a red circle " * 10])])  # truncated, not refused
            assert result.as_numpy("image").shape == (1, 16, 16, 3)
            with pytest.raises(InferenceServerException, match="over the limit of 2"):
                client.infer(MODEL, [prompt_input(["a", "b", "c"])])
        finally:
            client.close()
    assert not srv.thread.is_alive()


def test_cli_module_is_light_and_documents_its_flags():
    from click.testing import CliRunner

    code = "import sys, bitlatent.serving.cli as c; assert 'kserve' not in sys.modules and 'onnxruntime' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], cwd=PROJECT, timeout=60).returncode == 0
    from bitlatent.serving.cli import serve

    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for flag in ("--bundle", "--host", "--port", "--max-batch", "--max-body-bytes", "--truncate-long-prompts"):
        assert flag in result.output
    assert "127.0.0.1" in result.output
    missing = CliRunner().invoke(serve, ["--bundle", "/nonexistent/bundle"])
    assert missing.exit_code == 1 and "kedro run --pipelines export" in missing.output
