"""ONNX Runtime against eager PyTorch, text -> PNG latency, and a load test of the server (CPU).

    python benchmarks/inference.py                        # untrained models of the default sizes
    python benchmarks/inference.py --bundle data/06_models/onnx
    python benchmarks/inference.py --quick                # fewer repeats and requests

1. decoder and text model (MiniLM + head), batch 1 and 64: ONNX Runtime and torch eager run
   alternately (A B A B ...: drift on a shared machine hits both), ``--repeats`` times each after a
   warm-up; medians and the ratio torch / ORT. Each runs at its default thread count and at one
   thread; the ratio is best against best (and default against default beside it).
2. text -> PNG end to end (``OnnxGenerator.generate_png``, one prompt per call): p50 / p99.
3. the real server (``python -m bitlatent.serving``, a subprocess on 127.0.0.1): 16 concurrent
   tritonclient.http clients, a bounded number of one-prompt requests: throughput, p50 / p99,
   errors, the server's RSS before and after.

Speed does not depend on the weights: with ``--bundle`` the torch models are built from the
configs in its manifest (random weights); without it, untrained models of the default sizes are
exported to a temporary bundle first. Writes ``benchmarks/results/inference.json``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
CAPTIONS = [
    "a small red circle in the top left corner",
    "there is a blue square at the upper right",
    "a large green triangle near the bottom of the picture",
    "two yellow stars on a striped background",
    "a purple ellipse in the middle, next to an orange square",
    "a tiny white cross at the lower left on a dotted texture",
    "an orange hexagon above a grey circle",
    "a black square in the centre",
]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


# ----------------------------------------------------------------------------- models


def models_for(bundle: Path | None):
    """(decoder, head, bundle folder, made_here): torch models of the bundle's configs, or untrained
    defaults exported to a fresh bundle."""
    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
    from bitlatent.text.model import TextToLatent, TextToLatentConfig

    if bundle is not None:
        from bitlatent.inference import read_manifest

        manifest = read_manifest(bundle)
        decoder = BinaryLatentDecoder(DecoderConfig.from_dict(manifest["decoder"]["config"])).eval()
        head = TextToLatent(TextToLatentConfig.from_dict(manifest["text_model"])).eval()
        return decoder, head, bundle, False
    import torch

    from bitlatent.export import ExportConfig, export_bundle, text_model_parts

    torch.manual_seed(0)
    decoder = BinaryLatentDecoder(DecoderConfig()).eval()
    with torch.no_grad():
        for name, p in decoder.named_parameters():
            if "proj" in name:  # zero-initialised residual projections: give them weights, as after training
                p.normal_(0.0, 0.02)
    head = TextToLatent(TextToLatentConfig()).eval()
    folder = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    print("exporting untrained default-size models ...", flush=True)
    export_bundle(decoder, text_model_parts(head), folder, ExportConfig(fp16=False, library_splits=[]))
    return decoder, head, folder, True


# ----------------------------------------------------------------------------- 1. ORT vs torch


def side_by_side(run_torch, ort_runs: dict, repeats: int, warmup: int = 3) -> dict:
    """Median times of torch eager and ONNX Runtime, every variant run in turn (A B C D A B C D ...).

    Both run at their default thread count (one per core) and at one thread (on a busy 2-core
    machine one thread is often faster): ``speedup`` is ORT's best over torch's best, so neither
    side is handicapped; ``speedup_default_threads`` compares the defaults."""
    import torch

    default_threads = torch.get_num_threads()

    def torch_with(threads: int):
        def run():
            torch.set_num_threads(threads)
            try:
                run_torch()
            finally:
                torch.set_num_threads(default_threads)

        return run

    runs = {"torch": torch_with(default_threads), "torch_1_thread": torch_with(1),
            "ort": ort_runs["default"], "ort_1_thread": ort_runs["1_thread"]}  # fmt: skip
    for _ in range(warmup):
        for run in runs.values():
            run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    med = {name: statistics.median(t) for name, t in times.items()}
    best_torch, best_ort = min(med["torch"], med["torch_1_thread"]), min(med["ort"], med["ort_1_thread"])
    return {**{f"{name}_median_ms": ms(m) for name, m in med.items()},
            "speedup": round(best_torch / best_ort, 2), "speedup_default_threads": round(med["torch"] / med["ort"], 2),
            "torch_p90_ms": ms(percentile(times["torch"], 90)), "ort_p90_ms": ms(percentile(times["ort"], 90)),
            "repeats": repeats, "default_threads": default_threads}  # fmt: skip


def compare_models(decoder, head, bundle: Path, repeats: int) -> dict:
    import onnxruntime as ort
    import torch

    from bitlatent.core.binary import bits_to_signs
    from bitlatent.text.encoder import load_text_encoder

    def sessions(threads: int | None):
        options = ort.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as OnnxGenerator
        if threads:
            options.intra_op_num_threads = threads
        return {name: ort.InferenceSession(str(bundle / f"{name}.onnx"), options, providers=["CPUExecutionProvider"])
                for name in ("decoder", "text_to_latent")}  # fmt: skip

    variants = {"default": sessions(None), "1_thread": sessions(1)}
    encoder = load_text_encoder("cpu")
    from bitlatent.text.model import TextToLatentPipeline

    pipeline = TextToLatentPipeline(encoder.model, head).eval()
    spec = decoder.latent_spec
    rng = np.random.default_rng(0)
    results: dict = {"decoder": {}, "text_to_latent": {}}
    for batch in (1, 64):
        bits = rng.integers(0, 2, size=(batch, *spec.shape), dtype=np.uint8)

        def torch_decoder(bits=bits):
            with torch.inference_mode():
                decoder(bits_to_signs(bits))

        ort_decoder = {k: (lambda s=v["decoder"], bits=bits: s.run(["image"], {"bits": bits})) for k, v in variants.items()}
        results["decoder"][f"batch_{batch}"] = side_by_side(torch_decoder, ort_decoder, repeats if batch == 1 else max(repeats // 3, 5))
        print("decoder", batch, results["decoder"][f"batch_{batch}"], flush=True)

        prompts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
        ids, mask = encoder.tokenize(prompts, head.config.max_length)

        def torch_text(ids=ids, mask=mask):
            with torch.inference_mode():
                pipeline(ids, mask)

        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}
        ort_text = {k: (lambda s=v["text_to_latent"]: s.run(["bit_logits", "bits"], feeds)) for k, v in variants.items()}
        entry = side_by_side(torch_text, ort_text, repeats if batch == 1 else max(repeats // 3, 5))
        entry["tokens"] = int(ids.shape[1])
        results["text_to_latent"][f"batch_{batch}"] = entry
        print("text_to_latent", batch, entry, flush=True)
    results["note"] = ("speedup: ORT's faster thread setting over torch's faster one; ORT threads do not spin-wait "
                       "(as in OnnxGenerator)")
    return results


# ----------------------------------------------------------------------------- 2. text -> PNG


def text_to_png(bundle: Path, repeats: int) -> dict:
    from bitlatent.inference import OnnxGenerator

    generator = OnnxGenerator(bundle, device="cpu")
    for caption in CAPTIONS:
        generator.generate_png([caption])
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        png = generator.generate_png([CAPTIONS[i % len(CAPTIONS)]])[0]
        times.append(time.perf_counter() - start)
    return {"requests": repeats, "p50_ms": ms(percentile(times, 50)), "p99_ms": ms(percentile(times, 99)),
            "mean_ms": ms(statistics.fmean(times)), "png_bytes": len(png), "providers": generator.providers}  # fmt: skip


# ----------------------------------------------------------------------------- 3. load test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test(bundle: Path, clients: int, requests: int, timeout: float = 600.0) -> dict:
    import psutil
    import tritonclient.http as httpclient

    port = free_port()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "bitlatent.serving", "--bundle", str(bundle), "--port", str(port),
                             "--device", "cpu", "--max-batch", "16"],
                            cwd=PROJECT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "ORT_DISABLE_TELEMETRY": "1"})  # fmt: skip
    url = f"127.0.0.1:{port}"
    try:
        probe = httpclient.InferenceServerClient(url)
        deadline = time.monotonic() + 120
        while True:
            try:
                if probe.is_server_ready():
                    break
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"server did not start:\n{log.read()[-2000:]}")
            time.sleep(0.2)
        probe.close()
        server = psutil.Process(proc.pid)

        def one_round(n: int) -> tuple[list[float], int, float]:
            latencies: list[float] = []
            errors = [0]
            lock = threading.Lock()
            counter = iter(range(n))
            end_by = time.monotonic() + timeout

            def worker() -> None:
                client = httpclient.InferenceServerClient(url, network_timeout=60)
                try:
                    while time.monotonic() < end_by:
                        with lock:
                            i = next(counter, None)
                        if i is None:
                            return
                        tensor = httpclient.InferInput("prompt", [1], "BYTES")
                        tensor.set_data_from_numpy(np.array([CAPTIONS[i % len(CAPTIONS)].encode()], dtype=object))
                        start = time.perf_counter()
                        try:
                            result = client.infer("bitlatent", [tensor])
                            ok = result.as_numpy("image") is not None
                        except Exception:  # noqa: BLE001 - counted
                            ok = False
                        elapsed = time.perf_counter() - start
                        with lock:
                            latencies.append(elapsed)
                            errors[0] += 0 if ok else 1
                finally:
                    client.close()

            threads = [threading.Thread(target=worker) for _ in range(clients)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return latencies, errors[0], time.perf_counter() - start

        one_round(clients * 2)  # warm-up
        rss_before = server.memory_info().rss
        latencies, errors, wall = one_round(requests)
        rss_after = server.memory_info().rss
        latencies2, errors2, wall2 = one_round(requests)  # a second round: is memory stable?
        rss_after2 = server.memory_info().rss
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
        log.close()
    return {
        "clients": clients, "requests": len(latencies), "errors": errors + errors2, "seconds": round(wall, 2),
        "throughput_rps": round(len(latencies) / wall, 1),
        "p50_ms": ms(percentile(latencies, 50)), "p99_ms": ms(percentile(latencies, 99)),
        "second_round": {"requests": len(latencies2), "throughput_rps": round(len(latencies2) / wall2, 1),
                         "p50_ms": ms(percentile(latencies2, 50)), "p99_ms": ms(percentile(latencies2, 99))},
        "rss_mb": {"before": round(rss_before / 2**20, 1), "after": round(rss_after / 2**20, 1),
                   "after_second_round": round(rss_after2 / 2**20, 1)},
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="An exported bundle (default: export untrained models).")
    parser.add_argument("--repeats", type=int, default=30, help="Timed runs per model at batch 1 (a third at batch 64).")
    parser.add_argument("--png-requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=480, help="Requests per load-test round.")
    parser.add_argument("--quick", action="store_true", help="10 repeats, 100 PNGs, 160 requests.")
    args = parser.parse_args()
    if args.quick:
        args.repeats, args.png_requests, args.requests = 10, 100, 160
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    load_start = list(os.getloadavg())  # other jobs on the machine skew every figure: recorded
    decoder, head, bundle, made_here = models_for(args.bundle)
    try:
        models = compare_models(decoder, head, bundle, args.repeats)
        png = text_to_png(bundle, args.png_requests)
        print("text -> PNG", png, flush=True)
        load = load_test(bundle, args.clients, args.requests)
        print("load test", load, flush=True)
    finally:
        if made_here:
            shutil.rmtree(bundle, ignore_errors=True)
    payload = {
        "machine": {**machine(), "load_average_at_start": load_start, "load_average_at_end": list(os.getloadavg())},
        "bundle": str(args.bundle) if args.bundle else "untrained default-size models, exported for this run",
        "decoder_config": decoder.config.to_dict(), "decoder_parameters": decoder.num_parameters(),
        "text_model_parameters": head.num_parameters(),
        "ort_vs_torch": models, "text_to_png": png, "server_load_test": load,
        "targets": {"decoder_speedup_batch_1": models["decoder"]["batch_1"]["speedup"],
                    "decoder_speedup_batch_64": models["decoder"]["batch_64"]["speedup"],
                    "decoder_2x": min(models["decoder"]["batch_1"]["speedup"], models["decoder"]["batch_64"]["speedup"]) >= 2.0,
                    "text_to_png_p50_under_50ms": png["p50_ms"] < 50.0},
    }  # fmt: skip
    print(f"wrote {write_result('inference', payload)}")


if __name__ == "__main__":
    main()
