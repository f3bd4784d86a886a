"""ONNX Runtime against eager PyTorch, text -> PNG latency, and a load test of the server (CPU).

    python benchmarks/inference.py                        # untrained models of the default sizes
    python benchmarks/inference.py --bundle data/06_models/onnx
    python benchmarks/inference.py --quick                # fewer repeats and requests
    python benchmarks/inference.py --device cuda          # the GPU figures (needs onnxruntime-gpu: make EXTRA=gpu)

1. decoder and text model (MiniLM + head), batch 1 and 64: ONNX Runtime (``OnnxGenerator``'s
   sessions) and torch eager run in alternating blocks (drift on a shared machine hits both),
   ``--repeats`` times each after a warm-up; medians and the ratio torch / ORT, at one thread and
   at torch's default count (the same count on both sides, set once per block, never toggled
   between calls); the headline ratio is torch's best against ORT's best. The decoder also runs
   in torch channels-last and, at batch 64, through ``OnnxGenerator.decode`` (chunks) beside torch
   in the same chunks, for context; on CPU the ORT session also runs with spinning threads
   (``--spin`` of the server) and the bundle's int8 decoder with and without them (its distance
   from fp32 is in the bundle's parity report).
2. text -> PNG end to end (``OnnxGenerator.generate_png``, one prompt per call): p50 / p99, for the
   default-size bundle (generate mode: the per-bit prediction) and for untrained models at the
   ``make run`` size with the cell prior of ``conf/base`` (generate mode: ``prior_context.onnx``
   once, then one ``prior.onnx`` step per block of cells: 64 per image).
3. the real server (``python -m bitlatent.serving``, a subprocess on 127.0.0.1): 16 concurrent
   tritonclient.http clients, a bounded number of one-prompt requests: throughput, p50 / p99,
   errors, the server's RSS before and after.

Speed does not depend on the weights: with ``--bundle`` the torch models are built from the
configs in its manifest (random weights); without it, untrained models of the default sizes are
exported to a temporary bundle first. Writes ``benchmarks/results/inference.json``.

With ``--device cuda`` torch runs on the GPU and ONNX Runtime on its CUDA provider, both in
float32 for the comparison (the serving path, text -> PNG and the server, uses the bundle's fp16
models when it has them); torch calls end with the output copied to the host, as ORT's do, and
the thread-count loop is skipped. Writes ``inference_cuda.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
from typing import Any
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, add_device_argument, check_device, machine, result_name, write_result  # noqa: E402

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


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


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
            elif name.endswith("bias"):  # and biases that differ between sub-pixels (the general export graph)
                p.add_(torch.randn_like(p), alpha=0.01)
    head = TextToLatent(TextToLatentConfig()).eval()
    folder = Path(tempfile.mkdtemp(prefix="bench-bundle-"))
    print("exporting untrained default-size models ...", flush=True)
    export_bundle(decoder, text_model_parts(head), folder, ExportConfig(fp16=False, library_splits=[]))
    return decoder, head, folder, True


# ----------------------------------------------------------------------------- 1. ORT vs torch


def side_by_side(make_runs, thread_counts: tuple[int, ...], repeats: int, warmup: int = 3, rounds: int = 3) -> dict:
    """Median times of torch eager and ONNX Runtime at each thread count, each variant timed in its
    own block of consecutive calls, the blocks in turn (A A A B B B C C C, A A A ...: drift on a
    shared machine hits all of them).

    ``make_runs(threads)`` returns ``{name: callable}``: names starting with "torch" are torch
    calls (run after ``torch.set_num_threads(threads)``), the others ORT sessions made with
    ``intra_op_num_threads=threads``, so both sides always use the same thread count. The count
    changes only between rounds of blocks, and blocks alternate (1, 2, 1, 2 ... ``rounds`` times):
    switching torch's thread count before every call, as an earlier version of this script did,
    made torch's next call about 2x slower at batch 1. Each block starts with ``warmup`` untimed
    calls. Blocks rather than call-by-call alternation: a runtime whose idle threads spin (torch's
    OpenMP pool, an ORT session with spinning on) slowed the *other* runtime's next call on two
    cores (torch at batch 1, 2 threads: 4.5 ms alone, 27.6 ms right after a spinning ORT session).
    ``repeats`` timed calls per variant and thread count in all.

    Per thread count: every variant's median and p90 and ``speedup`` = torch / ort. Overall:
    ``speedup`` = torch's fastest thread count against ORT's fastest (neither side handicapped),
    ``speedup_same_threads`` per count."""
    import torch

    default_threads = torch.get_num_threads()
    runs = {t: make_runs(t) for t in thread_counts}
    times: dict[int, dict[str, list[float]]] = {t: {name: [] for name in runs[t]} for t in thread_counts}
    per_round = max(1, -(-repeats // rounds))
    try:
        for _ in range(rounds):
            for t in thread_counts:
                torch.set_num_threads(t)
                for name, run in runs[t].items():
                    for _ in range(warmup):
                        run()
                    for _ in range(per_round):
                        start = time.perf_counter()
                        run()
                        times[t][name].append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(default_threads)
    out: dict = {}
    med = {t: {name: statistics.median(v) for name, v in times[t].items()} for t in thread_counts}
    for t in thread_counts:
        entry = {f"{name}_median_ms": ms(m) for name, m in med[t].items()}
        entry.update({f"{name}_p90_ms": ms(percentile(v, 90)) for name, v in times[t].items()})
        entry["speedup"] = round(med[t]["torch"] / med[t]["ort"], 2)
        out[f"threads_{t}"] = entry
    best_torch = min(thread_counts, key=lambda t: med[t]["torch"])
    best_ort = min(thread_counts, key=lambda t: med[t]["ort"])
    out.update({
        "torch_median_ms": ms(med[best_torch]["torch"]), "torch_threads": best_torch,
        "ort_median_ms": ms(med[best_ort]["ort"]), "ort_threads": best_ort,
        "speedup": round(med[best_torch]["torch"] / med[best_ort]["ort"], 2),
        "speedup_same_threads": {str(t): out[f"threads_{t}"]["speedup"] for t in thread_counts},
        "repeats": per_round * rounds, "thread_counts": list(thread_counts),
    })  # fmt: skip
    extras = (("ort_decode", "speedup_decode_path"), ("ort_spin", "speedup_spinning"), ("ort_int8", "speedup_int8"),
              ("ort_int8_spin", "speedup_int8_spinning"))  # fmt: skip
    for variant, key in extras:
        if all(variant in med[t] for t in thread_counts):
            best = min(thread_counts, key=lambda t: med[t][variant])
            out.update({f"{variant}_median_ms": ms(med[best][variant]), f"{variant}_threads": best,
                        key: round(med[best_torch]["torch"] / med[best][variant], 2)})  # fmt: skip
    return out


def compare_models(decoder, head, bundle: Path, repeats: int, device: str = "cpu") -> dict:
    """Decoder and text model, batch 1 and 64, torch eager against ONNX Runtime at 1 thread and at
    torch's default count. ONNX Runtime runs the sessions of ``OnnxGenerator`` (its session options).

    Decoder variants: ``torch`` = ``decoder(signs)`` as the model is written (NCHW, inference mode)
    and ``ort`` = one ``session.run`` of the whole batch: the headline pair. Beside them, for
    context: ``torch_channels_last`` (the same module in channels-last memory format, a layout
    torch's oneDNN convolutions prefer) and, at batch 64, ``ort_decode`` = ``OnnxGenerator.decode``
    (the serving path: chunks of ``decode_batch`` latents) and ``torch_chunked`` (torch eager in
    chunks of the same size, which helps it too); on CPU also ``ort_spin`` (the same session with
    spinning threads, ``OnnxGenerator(spinning=True)`` / ``bitlatent serve --spin``), ``ort_int8`` and
    ``ort_int8_spin`` (the bundle's int8 decoder, ``precision="int8"``)."""
    import torch

    from bitlatent.core.binary import bits_to_signs
    from bitlatent.inference import OnnxGenerator
    from bitlatent.text.encoder import load_text_encoder
    from bitlatent.text.model import TextToLatentPipeline

    default_threads = torch.get_num_threads()
    thread_counts = (default_threads,) if device == "cuda" else tuple(sorted({1, default_threads}))
    generators = {t: OnnxGenerator(bundle, device=device, precision="fp32", threads=t, verify=False) for t in thread_counts}
    extra: dict[str, dict[int, Any]] = {}  # variant -> threads -> decoder session
    if device == "cpu":
        has_int8 = "decoder_int8" in generators[thread_counts[0]].manifest["models"]
        for variant, precision, spinning in (("ort_spin", "fp32", True), ("ort_int8", "int8", False),
                                             ("ort_int8_spin", "int8", True)):  # fmt: skip
            if precision == "int8" and not has_int8:
                continue
            extra[variant] = {t: OnnxGenerator(bundle, device=device, precision=precision, threads=t, verify=False,
                                               spinning=spinning).decoder_session for t in thread_counts}  # fmt: skip
    chunk = generators[thread_counts[0]].decode_batch
    encoder = load_text_encoder(device)
    pipeline = TextToLatentPipeline(encoder.model, head.to(device)).eval()
    decoder = decoder.to(device)
    decoder_cl = copy.deepcopy(decoder).to(memory_format=torch.channels_last).eval()

    def host(out):  # on a GPU: wait for the result and copy it to the host, as ORT's run does
        return out.cpu() if device == "cuda" else out
    spec = decoder.latent_spec
    rng = np.random.default_rng(0)
    results: dict = {"decoder": {}, "text_to_latent": {}, "decode_batch": chunk}
    for batch in (1, 64):
        bits = rng.integers(0, 2, size=(batch, *spec.shape), dtype=np.uint8)
        n = repeats if batch == 1 else max(repeats // 3, 5)

        def decoder_runs(t: int, bits=bits, batch=batch):
            def run_torch():
                with torch.inference_mode():
                    host(decoder(bits_to_signs(bits).to(device)))

            def run_torch_cl():
                with torch.inference_mode():
                    host(decoder_cl(bits_to_signs(bits).to(device).contiguous(memory_format=torch.channels_last)))

            def run_torch_chunked():
                with torch.inference_mode():
                    for lo in range(0, batch, chunk):
                        host(decoder(bits_to_signs(bits[lo : lo + chunk]).to(device)))

            session = generators[t].decoder_session
            runs = {"torch": run_torch, "ort": lambda: session.run(["image"], {"bits": bits}),
                    "torch_channels_last": run_torch_cl}  # fmt: skip
            for variant, sessions in extra.items():
                runs[variant] = lambda s=sessions[t]: s.run(["image"], {"bits": bits})
            if batch > chunk:
                runs.update(torch_chunked=run_torch_chunked, ort_decode=lambda: generators[t].decode(bits))
            return runs

        entry = side_by_side(decoder_runs, thread_counts, n, warmup=3 if batch == 1 else 1)
        results["decoder"][f"batch_{batch}"] = entry
        print("decoder", batch, entry, flush=True)

        prompts = [CAPTIONS[i % len(CAPTIONS)] for i in range(batch)]
        ids, mask = encoder.tokenize(prompts, head.config.max_length)
        feeds = {"input_ids": ids.numpy(), "attention_mask": mask.numpy()}

        def text_runs(t: int, ids=ids, mask=mask, feeds=feeds):
            def run_torch():
                with torch.inference_mode():
                    host(pipeline(ids.to(device), mask.to(device))[0])

            session = generators[t].text_session
            return {"torch": run_torch, "ort": lambda: session.run(["bit_logits", "bits"], feeds)}

        entry = side_by_side(text_runs, thread_counts, n, warmup=3 if batch == 1 else 1)
        entry["tokens"] = int(ids.shape[1])
        results["text_to_latent"][f"batch_{batch}"] = entry
        print("text_to_latent", batch, entry, flush=True)
    results["note"] = ("per thread count, torch and ORT use the same number of threads; speedup: torch's faster "
                       "thread count against ORT's faster one; ORT sessions are OnnxGenerator's (spinning off)")
    return results


# ----------------------------------------------------------------------------- 2. text -> PNG


def text_to_png(bundle: Path, repeats: int, device: str = "cpu", mode: str = "generate") -> dict:
    from bitlatent.inference import OnnxGenerator

    generator = OnnxGenerator(bundle, device=device)
    for caption in CAPTIONS:
        generator.generate_png([caption], mode=mode)
    times = []
    for i in range(repeats):
        start = time.perf_counter()
        png = generator.generate_png([CAPTIONS[i % len(CAPTIONS)]], mode=mode, seed=i)[0]
        times.append(time.perf_counter() - start)
    return {"requests": repeats, "mode": mode, "cell_prior": generator.prior_session is not None,
            "p50_ms": ms(percentile(times, 50)), "p99_ms": ms(percentile(times, 99)),
            "mean_ms": ms(statistics.fmean(times)), "png_bytes": len(png), "providers": generator.providers}  # fmt: skip


def prior_bundle() -> tuple[Path, dict]:
    """Untrained models at the `make run` size (conf/base: its image size, latent grid and
    alignment model with its cell prior) exported to a fresh bundle: generate mode there draws
    from the prior, ``prior_context.onnx`` once and one ``prior.onnx`` call per block of
    ``prior_patch x prior_patch`` cells (64 per image at conf/base's 16x16 grid and 2x2 blocks)."""
    import torch
    import yaml

    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
    from bitlatent.export import ExportConfig, export_bundle, text_model_parts
    from bitlatent.text.model import TextToLatent, TextToLatentConfig

    conf = PROJECT / "conf" / "base"
    decoder_params = yaml.safe_load((conf / "parameters_decoder_pretraining.yml").read_text())["decoder"]
    image_size = yaml.safe_load((conf / "parameters_data_validation.yml").read_text())["data"]["image_size"]
    model_params = yaml.safe_load((conf / "parameters_alignment.yml").read_text())["alignment"]["model"]
    torch.manual_seed(0)
    decoder = BinaryLatentDecoder(DecoderConfig(image_size=image_size, **decoder_params)).eval()
    head = TextToLatent(TextToLatentConfig.for_spec(decoder.latent_spec, **model_params)).eval()
    folder = Path(tempfile.mkdtemp(prefix="bench-prior-bundle-"))
    export_bundle(decoder, text_model_parts(head), folder, ExportConfig(fp16=False, int8=False, library_splits=[]))
    return folder, {"decoder": decoder.config.to_dict(), "text_model": head.config.to_dict()}


# ----------------------------------------------------------------------------- 3. load test


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_test(bundle: Path, clients: int, requests: int, timeout: float = 600.0, device: str = "cpu") -> dict:
    import psutil
    import tritonclient.http as httpclient

    port = free_port()
    log = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen([sys.executable, "-m", "bitlatent.serving", "--bundle", str(bundle), "--port", str(port),
                             "--device", device, "--max-batch", "16"],
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


def cell_prior_png(requests: int, device: str) -> dict:
    """Text -> PNG through a fresh bundle of untrained ``make run``-size models with the cell prior."""
    prior_folder, prior_models = prior_bundle()
    try:
        return {**text_to_png(prior_folder, requests, device), "models": prior_models}
    finally:
        shutil.rmtree(prior_folder, ignore_errors=True)


def update_cell_prior_entry(requests: int, device: str, load_start: list[float]) -> None:
    """Replace ``text_to_png_cell_prior`` (and its target) in an existing results file; the entry
    carries the machine and date it was measured on, which may differ from the rest of the file."""
    path = RESULTS / f"{result_name('inference', device)}.json"
    payload = json.loads(path.read_text())
    png_prior = cell_prior_png(requests, device)
    print("text -> PNG, generate from the cell prior", png_prior, flush=True)
    payload["text_to_png_cell_prior"] = {**png_prior, "machine": {**machine(), "onnxruntime": _ort_version(),
                                         "load_average_at_start": load_start, "load_average_at_end": list(os.getloadavg())}}  # fmt: skip
    payload["targets"]["text_to_png_cell_prior_p50_under_50ms"] = png_prior["p50_ms"] < 50.0
    print(f"wrote {write_result(result_name('inference', device), payload)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", type=Path, default=None, help="An exported bundle (default: export untrained models).")
    parser.add_argument("--repeats", type=int, default=30, help="Timed runs per model at batch 1 (a third at batch 64).")
    parser.add_argument("--png-requests", type=int, default=300)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=480, help="Requests per load-test round.")
    parser.add_argument("--quick", action="store_true", help="10 repeats, 100 PNGs, 160 requests.")
    parser.add_argument("--cell-prior-only", action="store_true",
                        help="Time only text -> PNG from the cell prior and replace that entry (with its own "
                             "machine and date) in the results file.")
    add_device_argument(parser)
    args = parser.parse_args()
    check_device(args.device)
    if args.quick:
        args.repeats, args.png_requests, args.requests = 10, 100, 160
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

    load_start = list(os.getloadavg())  # other jobs on the machine skew every figure: recorded
    if args.cell_prior_only:
        update_cell_prior_entry(args.png_requests, args.device, load_start)
        return
    decoder, head, bundle, made_here = models_for(args.bundle)
    try:
        models = compare_models(decoder, head, bundle, args.repeats, args.device)
        png = text_to_png(bundle, args.png_requests, args.device)
        print("text -> PNG", png, flush=True)
        png_prior = cell_prior_png(args.png_requests, args.device)
        print("text -> PNG, generate from the cell prior", png_prior, flush=True)
        load = load_test(bundle, args.clients, args.requests, device=args.device)
        print("load test", load, flush=True)
    finally:
        if made_here:
            shutil.rmtree(bundle, ignore_errors=True)
    payload = {
        "device": args.device,
        "machine": {**machine(), "onnxruntime": _ort_version(), "load_average_at_start": load_start,
                    "load_average_at_end": list(os.getloadavg())},
        "bundle": str(args.bundle) if args.bundle else "untrained default-size models, exported for this run",
        "decoder_config": decoder.config.to_dict(), "decoder_parameters": decoder.num_parameters(),
        "text_model_parameters": head.num_parameters(),
        "ort_vs_torch": models, "text_to_png": png, "text_to_png_cell_prior": png_prior, "server_load_test": load,
        "targets": {"decoder_speedup_batch_1": models["decoder"]["batch_1"]["speedup"],
                    "decoder_speedup_batch_64": models["decoder"]["batch_64"]["speedup"],
                    "decoder_2x": min(models["decoder"]["batch_1"]["speedup"], models["decoder"]["batch_64"]["speedup"]) >= 2.0,
                    "decoder_speedup_spinning": {b: models["decoder"][f"batch_{b}"].get("speedup_spinning") for b in (1, 64)},
                    "decoder_2x_spinning": all((models["decoder"][f"batch_{b}"].get("speedup_spinning") or 0) >= 2.0 for b in (1, 64)),
                    "decoder_speedup_same_threads": {b: models["decoder"][f"batch_{b}"]["speedup_same_threads"] for b in (1, 64)},
                    "decoder_speedup_decode_path_batch_64": models["decoder"]["batch_64"].get("speedup_decode_path"),
                    "decoder_int8_speedup": {b: models["decoder"][f"batch_{b}"].get("speedup_int8") for b in (1, 64)},
                    "text_to_png_p50_under_50ms": png["p50_ms"] < 50.0,
                    "text_to_png_cell_prior_p50_under_50ms": png_prior["p50_ms"] < 50.0},
    }  # fmt: skip
    print(f"wrote {write_result(result_name('inference', args.device), payload)}")


if __name__ == "__main__":
    main()
