"""The KServe server under a bounded loopback load, good and bad requests mixed.

    python benchmarks/serving_load.py                                  # untrained default-size models
    python benchmarks/serving_load.py --bundle data/06_models/onnx --clients 8 --seconds 20

Starts the real server (``python -m bitlatent.serving``, a subprocess on 127.0.0.1), runs
``--clients`` concurrent raw HTTP clients for ``--seconds``, each cycling through every kind of
request in ``KINDS`` (valid prompts, and each kind of bad input: malformed JSON, wrong
structure, datatype, shape, input name, empty or over-long prompts, bad parameters and outputs,
an unknown model, a body over the size limit, a wrong method), and checks:

- no answer is a 5xx (and no connection fails);
- every bad request gets its expected 4xx with a JSON ``{"error": "<message>"}``;
- every valid request gets a 200 with images;
- the server's resident memory at the end is within ``--rss-tolerance`` of the start (measured
  after a warm-up round of every kind).

Prints and writes ``results/serving_load.json`` (p50 / p99 per kind and overall, RSS, the
machine and date); exits 1 when a check fails. ``tests/benchmarks/test_serving_load.py`` runs
the same load for a few seconds on the tiny test bundle.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result  # noqa: E402
from inference import free_port, models_for, ms, percentile  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
MODEL = "bitlatent"
MAX_BATCH = 4
MAX_BODY = 64 * 1024
INFER = f"/v2/models/{MODEL}/infer"


def _prompts(*prompts: str, **extra) -> bytes:
    tensor = {"name": "prompt", "datatype": "BYTES", "shape": [len(prompts)], "data": list(prompts)}
    return json.dumps({"inputs": [tensor], **extra}).encode()


_TENSOR = {"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["a red circle"]}
_BINARY_HEADER = b'{"inputs":[{"name":"prompt","datatype":"BYTES","shape":[1],"parameters":{"binary_data_size":6}}]}'


@dataclass(frozen=True)
class Kind:
    """One kind of request and the status it must get."""

    name: str
    body: bytes
    status: int  # 200 for valid requests, the 4xx a bad one must get
    method: str = "POST"
    path: str = INFER
    headers: tuple[tuple[str, str], ...] = (("Content-Type", "application/json"),)


KINDS = (
    Kind("valid", _prompts("a small red circle in the top left corner"), 200),
    Kind("valid_batch_png", _prompts("a blue square", "a green triangle", outputs=[{"name": "png"}]), 200),
    Kind("valid_no_content_type", _prompts("two yellow stars"), 200, headers=()),
    Kind("malformed_json", b'{"inputs": [{"name": "prompt",', 400),
    Kind("not_utf8_body", b'{"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1], "data": ["\xff"]}]}', 400),
    Kind("not_an_object", b"[1, 2, 3]", 400),
    Kind("no_inputs", b"{}", 400),
    Kind("wrong_datatype", json.dumps({"inputs": [{"name": "prompt", "datatype": "FP32", "shape": [1],
                                                   "data": [1.0]}]}).encode(), 400),
    Kind("wrong_shape", json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [2, 2],
                                                "data": ["a", "b", "c", "d"]}]}).encode(), 400),
    Kind("shape_data_mismatch", json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [3],
                                                        "data": ["a"]}]}).encode(), 400),
    Kind("data_not_text", json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [2],
                                                  "data": [7, None]}]}).encode(), 400),
    Kind("nested_data", json.dumps({"inputs": [{"name": "prompt", "datatype": "BYTES", "shape": [1],
                                                "data": [["a", ["b"]]]}]}).encode(), 400),
    Kind("wrong_input_name", json.dumps({"inputs": [{"name": "text", "datatype": "BYTES", "shape": [1],
                                                     "data": ["a"]}]}).encode(), 400),
    Kind("empty_prompt", _prompts(""), 400),
    Kind("whitespace_prompt", _prompts("fine", " \t\n "), 400),
    Kind("prompt_over_token_limit", _prompts("a red circle " * 200), 400),
    Kind("batch_over_limit", _prompts(*["a red circle"] * (MAX_BATCH + 1)), 400),
    Kind("bad_parameter", _prompts("a red circle", parameters={"temperature": -1}), 400),
    Kind("unknown_parameter", _prompts("a red circle", parameters={"steps": 50}), 400),
    Kind("parameter_wrong_type", _prompts("a red circle", parameters={"seed": "seven"}), 400),
    Kind("unknown_mode", _prompts("a red circle", parameters={"mode": "dream"}), 400),
    Kind("unknown_output", _prompts("a red circle", outputs=[{"name": "mask"}]), 400),
    Kind("binary_header_mismatch", b'{"inputs": []}', 400,
         headers=(("Content-Type", "application/json"), ("Inference-Header-Content-Length", "999"))),
    Kind("truncated_binary_bytes", _BINARY_HEADER + b"\x05\x00\x00\x00ab", 400,
         headers=(("Content-Type", "application/json"), ("Inference-Header-Content-Length", str(len(_BINARY_HEADER))))),
    Kind("empty_body", b"", 400),
    Kind("deeply_nested_json", b"[" * 5000 + b"]" * 5000, 400),
    Kind("id_not_a_string", json.dumps({"id": 5, "inputs": [_TENSOR]}).encode(), 400),
    Kind("parameters_not_an_object", json.dumps({"inputs": [_TENSOR], "parameters": [1]}).encode(), 400),
    Kind("output_parameters_not_an_object", json.dumps({"inputs": [_TENSOR], "outputs": [{"name": "image", "parameters": "x"}]}).encode(), 400),
    Kind("batch_of_a_trillion", json.dumps({"inputs": [{**_TENSOR, "shape": [10**12]}]}).encode(), 400),
    Kind("huge_payload", _prompts("x" * (2 * MAX_BODY)), 400),
    Kind("unknown_model", _prompts("a red circle"), 404, path="/v2/models/other/infer"),
    Kind("wrong_method", b"", 405, method="GET"),
)


@dataclass
class Answer:
    kind: str
    status: int  # 0: the connection failed
    seconds: float
    message: str  # the error message of a 4xx, "" otherwise
    images: int = 0  # images in a 200


def start_server(bundle: Path, threads: int | None = None, timeout: float = 120.0) -> tuple[subprocess.Popen, int, object]:
    """The server on 127.0.0.1 (a free port), ready; returns (process, port, log file)."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")
    command = [sys.executable, "-m", "bitlatent.serving", "--bundle", str(bundle), "--port", str(port), "--device", "cpu",
               "--max-batch", str(MAX_BATCH), "--max-body-bytes", str(MAX_BODY)]  # fmt: skip
    if threads:
        command += ["--threads", str(threads)]
    proc = subprocess.Popen(command, cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ORT_DISABLE_TELEMETRY": "1", "PYTHONUNBUFFERED": "1"})  # fmt: skip
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/v2/health/ready")
            if conn.getresponse().status == 200:
                conn.close()
                return proc, port, log
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            log.seek(0)
            raise RuntimeError(f"the server did not start:\n{log.read()[-3000:]}")
        time.sleep(0.2)


def stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM (the server shuts down gracefully), SIGKILL if it is still there 15 s later."""
    import psutil

    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        _, alive = psutil.wait_procs([psutil.Process(proc.pid)], timeout=15)
    except psutil.NoSuchProcess:
        alive = []
    for survivor in alive:
        survivor.kill()
    proc.wait(5)


def send(conn: http.client.HTTPConnection, kind: Kind) -> Answer:
    """One request on ``conn``; a failed connection is an answer with status 0."""
    start = time.perf_counter()
    try:
        conn.request(kind.method, kind.path, body=kind.body if kind.method == "POST" else None, headers=dict(kind.headers))
        response = conn.getresponse()
        body = response.read()
    except (OSError, http.client.HTTPException) as error:
        conn.close()
        return Answer(kind.name, 0, time.perf_counter() - start, f"{type(error).__name__}: {error}")
    seconds = time.perf_counter() - start
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if response.status == 200:
        outputs = payload.get("outputs", []) if isinstance(payload, dict) else []
        images = next((o["shape"][0] for o in outputs if o.get("name") in ("image", "png")), 0)
        return Answer(kind.name, 200, seconds, "", images)
    message = ""
    if isinstance(payload, dict):
        message = payload.get("error") or payload.get("detail") or ""
    return Answer(kind.name, response.status, seconds, str(message))


def load(port: int, clients: int, seconds: float | None = None, rounds: int | None = None,
         kinds: tuple[Kind, ...] = KINDS) -> list[Answer]:
    """``clients`` threads, each cycling through ``kinds`` (from its own offset) on one keep-alive
    connection, for ``seconds`` or for ``rounds`` passes over every kind."""
    answers: list[Answer] = []
    lock = threading.Lock()
    end = time.monotonic() + (seconds or 0.0)

    def client(offset: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        mine: list[Answer] = []
        while (len(mine) < rounds * len(kinds)) if rounds is not None else (time.monotonic() < end):
            answer = send(conn, kinds[(offset + len(mine)) % len(kinds)])
            if answer.status == 0:  # counted as a failure; go on with a fresh connection
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            mine.append(answer)
        conn.close()
        with lock:
            answers.extend(mine)

    threads = [threading.Thread(target=client, args=(c * len(kinds) // clients,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return answers


def problems(answers: list[Answer], kinds: tuple[Kind, ...] = KINDS) -> list[str]:
    """Every answer that breaks the contract: a 5xx or failed connection, a bad request without
    its 4xx and a message, a valid one without images."""
    expected = {k.name: k.status for k in kinds}
    found = []
    for a in answers:
        want = expected[a.kind]
        if a.status == 0 or a.status >= 500:
            found.append(f"{a.kind}: {a.status or 'connection failed'} {a.message}")
        elif a.status != want:
            found.append(f"{a.kind}: {a.status}, expected {want} ({a.message})")
        elif want == 200 and a.images < 1:
            found.append(f"{a.kind}: 200 without images")
        elif want != 200 and not a.message.strip():
            found.append(f"{a.kind}: {a.status} without an error message")
    return found


def summary(answers: list[Answer], wall: float) -> dict:
    def stats(group: list[Answer]) -> dict:
        times = [a.seconds for a in group]
        return {"requests": len(group), "p50_ms": ms(percentile(times, 50)), "p99_ms": ms(percentile(times, 99))}

    valid = [a for a in answers if a.status == 200]
    bad = [a for a in answers if a.status != 200]
    return {"requests": len(answers), "seconds": round(wall, 2), "throughput_rps": round(len(answers) / wall, 1),
            "all": stats(answers), "valid": stats(valid) if valid else None, "bad": stats(bad) if bad else None,
            "by_kind": {k: stats([a for a in answers if a.kind == k]) for k in sorted({a.kind for a in answers})},
            "statuses": {str(s): sum(a.status == s for a in answers) for s in sorted({a.status for a in answers})}}  # fmt: skip


def run(bundle: Path, clients: int, seconds: float, threads: int | None = None, warmup_rounds: int = 3) -> dict:
    """Start the server, warm it up (every kind ``warmup_rounds`` times per client), measure RSS,
    run the load, measure RSS again, stop it."""
    import psutil

    proc, port, log = start_server(bundle, threads)
    try:
        server = psutil.Process(proc.pid)
        warm = load(port, clients, rounds=warmup_rounds)
        rss_start = server.memory_info().rss
        started = time.perf_counter()
        answers = load(port, clients, seconds)
        wall = time.perf_counter() - started
        rss_end = server.memory_info().rss
        alive = proc.poll() is None
    finally:
        stop_server(proc)
        log.seek(0)
        server_log = log.read()
        log.close()
    return {"clients": clients, "seconds": seconds, "kinds": [k.name for k in KINDS],
            **summary(answers, wall), "problems": problems(warm + answers),
            "rss_mb": {"start": round(rss_start / 2**20, 1), "end": round(rss_end / 2**20, 1),
                       "change": round((rss_end - rss_start) / rss_start, 4)},
            "server_alive": alive, "tracebacks_in_log": server_log.count("Traceback")}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="ONNX bundle (default: untrained default-size models)")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads of the server")
    parser.add_argument("--rss-tolerance", type=float, default=0.05, help="Largest allowed RSS growth (fraction)")
    args = parser.parse_args()

    _, _, bundle, made_here = models_for(args.bundle)
    try:
        result = run(bundle, args.clients, args.seconds, args.threads)
    finally:
        if made_here:
            import shutil

            shutil.rmtree(bundle, ignore_errors=True)
    result["bundle"] = "untrained default-size models" if made_here else str(args.bundle)
    result["rss_tolerance"] = args.rss_tolerance
    result["machine"] = machine()
    failures = list(result["problems"])
    if abs(result["rss_mb"]["change"]) > args.rss_tolerance:
        failures.append(f"RSS changed by {result['rss_mb']['change']:.1%}, over {args.rss_tolerance:.0%}")
    if not result["server_alive"] or result["tracebacks_in_log"]:
        failures.append(f"server alive: {result['server_alive']}, tracebacks in its log: {result['tracebacks_in_log']}")
    result["passed"] = not failures
    path = write_result("serving_load", result)
    print(json.dumps({k: v for k, v in result.items() if k != "by_kind"}, indent=2))
    print(f"wrote {path}")
    if failures:
        print("FAILED:\n  " + "\n  ".join(failures[:50]), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
