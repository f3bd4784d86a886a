"""Run every benchmark present in this folder, then gather their results in one place.

    python benchmarks/run_all.py            # full sizes (long: ingest up to 1M pairs, ...)
    python benchmarks/run_all.py --quick    # a few minutes on a laptop CPU

Each script runs in its own process (a failure or a missing script is recorded, never fatal):
ingest (``--sizes``), vae_comparison, adaptation_speed, rate_distortion and decoder_ceiling (full
size only) and inference (``--quick`` when it supports it). Each writes ``results/<name>.json``;
this script then writes ``results.json`` (machine, date, versions, what ran, every result),
``results.md`` (tables) and PNG plots in ``results/``. When torch sees a GPU, the torch benchmarks run a second time with
``--device cuda`` and their GPU figures (``results/<name>_cuda.json``) sit beside the CPU ones,
and ``gpu_check`` (``make gpu-check``) adds its GPU figures (``results/gpu_check.json``).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine  # noqa: E402

HERE = Path(__file__).parent
PROJECT = HERE.parent


GPU_BENCHMARKS = ("vae_comparison", "adaptation_speed", "rate_distortion", "inference")


def gpu_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def plan(quick: bool, gpu: bool = False) -> list[tuple[str, list[str], int]]:
    """(name, arguments, timeout in seconds) for each benchmark, in order; with ``gpu``, each of
    ``GPU_BENCHMARKS`` again as ``<name>_cuda`` with ``--device cuda``."""
    q = ["--quick"] if quick else []
    steps = [
        ("ingest", ["--sizes", "10000"] if quick else [], 600 if quick else 4 * 3600),
        ("vae_comparison", q, 900 if quick else 4 * 3600),
        ("adaptation_speed", q, 600 if quick else 3600),
    ]
    if not quick:
        steps.append(("rate_distortion", [], 6 * 3600))
        steps.append(("decoder_ceiling", [], 3600))
    steps.append(("inference", q, 900 if quick else 3600))
    if gpu:
        steps += [(f"{name}_cuda", [*args, "--device", "cuda"], timeout)
                  for name, args, timeout in list(steps) if name in GPU_BENCHMARKS]
        steps.append(("gpu_check", [], 900))
    return steps


def script_of(name: str) -> str:
    """The script a plan entry runs: ``vae_comparison_cuda`` runs ``vae_comparison.py``."""
    return name.removesuffix("_cuda")


def supports(script: Path, flag: str) -> bool:
    return flag in script.read_text()


def run_one(name: str, args: list[str], timeout: int) -> dict:
    script = HERE / f"{script_of(name)}.py"
    if not script.exists():
        return {"name": name, "status": "absent"}
    if "--quick" in args and not supports(script, "--quick"):
        args = [a for a in args if a != "--quick"]
    cmd = [sys.executable, str(script), *args]
    print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
    t0 = time.perf_counter()
    try:
        done = subprocess.run(cmd, cwd=PROJECT, capture_output=True, text=True, timeout=timeout)
        rc, out = done.returncode, (done.stdout + done.stderr)
    except subprocess.TimeoutExpired as exc:
        rc, out = "timeout", ((exc.stdout or b"").decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or ""))
    seconds = round(time.perf_counter() - t0, 1)
    status = "ok" if rc == 0 else "failed"
    print(f"   {status} (rc {rc}) in {seconds} s", flush=True)
    if status != "ok":
        print("\n".join(out.strip().splitlines()[-15:]), flush=True)
    return {"name": name, "args": args, "status": status, "returncode": rc, "seconds": seconds,
            "started_at_unix": round(time.time() - seconds), "output_tail": out[-3000:]}


def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in ("bitlatent", "torch", "numpy", "pillow", "onnxruntime", "kedro", "matplotlib"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


# ----------------------------------------------------------------------------- plots


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_ingest(res: dict) -> Path | None:
    runs = sorted(res.get("runs", []), key=lambda r: r["pairs"])
    if not runs:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([r["pairs"] for r in runs], [r["pairs_per_second"] for r in runs], "o-", label="pairs / s")
    ax.set_xscale("log")
    ax.set_xlabel("pairs")
    ax.set_ylabel("pairs / s")
    ax2 = ax.twinx()
    ax2.plot([r["pairs"] for r in runs], [r["peak_rss_mb"] for r in runs], "s--", color="C3", label="peak RSS (MB)")
    ax2.set_ylabel("peak RSS (MB)")
    ax.set_title("ingest + validation scaling")
    fig.tight_layout()
    path = RESULTS / "ingest_scaling.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_inference(res: dict, name: str = "inference") -> Path | None:
    rows = []
    for model, by_batch in (res.get("ort_vs_torch") or {}).items():
        if not isinstance(by_batch, dict):
            continue
        for batch, r in by_batch.items():
            if isinstance(r, dict) and "torch_median_ms" in r:
                rows.append((f"{model}\n{batch}", r["torch_median_ms"], r["ort_median_ms"]))
    if not rows:
        return None
    plt = _plt()
    import numpy as np

    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r[1] for r in rows], 0.4, label="torch eager")
    ax.bar(x + 0.2, [r[2] for r in rows], 0.4, label="ONNX Runtime")
    ax.set_xticks(x, [r[0] for r in rows], fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median latency (ms)")
    ax.set_title(f"inference latency ({res.get('device', 'cpu').upper()})")
    ax.legend()
    fig.tight_layout()
    path = RESULTS / f"{name}_latency.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- markdown


def _f(x, nd=2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:,.{nd}f}"
    if isinstance(x, int):
        return f"{x:,}"
    return str(x)


def md_ingest(res: dict) -> list[str]:
    lines = ["| pairs | seconds | pairs / s | peak RSS (MB) |", "| ---: | ---: | ---: | ---: |"]
    for r in sorted(res.get("runs", []), key=lambda r: r["pairs"]):
        lines.append(f"| {_f(r['pairs'])} | {_f(r['seconds'], 1)} | {_f(r['pairs_per_second'], 0)} | {_f(r['peak_rss_mb'], 0)} |")
    return lines


def md_vae(res: dict) -> list[str]:
    lines = [f"Training budget {res.get('budget_seconds_per_model')} s per model, {res.get('n_train')} training / "
             f"{res.get('n_test')} held-out images, torch threads {res.get('torch_threads')}.", ""]
    for name, d in res.get("datasets", {}).items():
        if "skipped" in d:
            lines += [f"**{name}**: skipped ({d['skipped']}).", ""]
            continue
        s, r, p = d["steps"], d["race"], d["parameters"]
        mem = s["memory"]
        lines += [f"**{name}** ({d['bits_per_image']:,} bits per image, same decoder; plot `{d.get('plot')}`)", "",
                  "| | decoder-only | binary VAE | VAE / decoder-only |", "| --- | ---: | ---: | ---: |",
                  f"| parameters | {_f(p['decoder_only'])} | {_f(p['vae']['total'])} (encoder {_f(p['vae']['encoder'])}) | "
                  f"{p['vae']['total'] / p['decoder_only']:.2f} |",
                  f"| time per step, batch {s['batch_size']} (median of {s['repeats']}, ms) | "
                  f"{s['step_seconds_median']['decoder_only'] * 1000:,.0f} | {s['step_seconds_median']['vae'] * 1000:,.0f} | "
                  f"{s['step_time_ratio_vae_over_decoder_only']:.2f} |",
                  f"| training memory: state + saved activations (MB) | {mem['decoder_only']['total_bytes'] / 1e6:,.1f} | "
                  f"{mem['vae']['total_bytes'] / 1e6:,.1f} | {s['memory_ratio_vae_over_decoder_only']:.2f} |",
                  f"| epochs in the budget | {r['decoder_only']['epochs']} | {r['vae']['epochs']} | |",
                  f"| train PSNR at the end (dB) | {_f(r['decoder_only']['train_psnr_final'])} | {_f(r['vae']['train_psnr_final'])} | |",
                  f"| held-out PSNR at the end (dB) | {_f(r['decoder_only']['heldout_psnr_final'])} | {_f(r['vae']['heldout_psnr_final'])} | |",
                  f"| latent for a new image (ms / image) | {r['decoder_only']['new_image_latent']['seconds_per_image'] * 1000:,.1f} "
                  f"({r['decoder_only']['new_image_latent']['method']}) | {r['vae']['new_image_latent']['seconds_per_image'] * 1000:,.2f} "
                  f"(encoder pass) | {1 / r['new_image_latent_cost_ratio_fit_over_encoder']:.4f} |", ""]
    return lines


def md_adaptation(res: dict) -> list[str]:
    s = res["summary"]
    return [f"Decoder: {res['decoder']} ({res['decoder_parameters']:,} parameters, {res['bits_per_image']:,} bits per "
            f"image); {res['images']} held-out images fitted together, {res['fit_steps']} steps, "
            f"{len(res['runs'])} repeats, torch threads {res.get('torch_threads')}.", "",
            "| images / s (median) | s / image | converged PSNR (dB) | steps to within 0.5 dB |",
            "| ---: | ---: | ---: | ---: |",
            f"| {_f(s['images_per_second_median'])} | {_f(s['seconds_per_image_median'], 3)} | "
            f"{_f(s['converged_psnr_median'])} | {_f(s['steps_to_within_0.5dB_median'], 0)} |"] + md_pipeline_vs_cli(res)


def md_pipeline_vs_cli(res: dict) -> list[str]:
    """One recipe fitted through the pipeline's call and through ``bitlatent encode``."""
    both = res.get("pipeline_vs_cli")
    if not both:
        return []
    r = both["recipe"]
    lines = ["", f"One recipe ({r['steps']} steps, lr {r['lr']}, betas {r['betas']}, chunk {r['chunk_size']}, "
                 f"{'bf16' if r['cpu_bf16'] else 'float32'}), {both['images']} images, {both['threads']} thread(s):", "",
             "| path | s / image | user CPU s | system CPU s |", "| --- | ---: | ---: | ---: |"]
    for name, label in (("pipeline", "pipeline's fit_latents"), ("cli", "`bitlatent encode` (process start included)")):
        t = both[name]
        lines.append(f"| {label} | {_f(t['seconds_per_image'], 3)} | {_f(t['user_seconds'], 1)} | "
                     f"{_f(t['system_seconds'], 1)} |")
    return lines


def md_inference(res: dict) -> list[str]:
    lines = ["| model | batch | threads (torch / ORT) | torch eager (ms) | ONNX Runtime (ms) | torch / ORT |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for model, by_batch in (res.get("ort_vs_torch") or {}).items():
        if not isinstance(by_batch, dict):
            continue
        for batch, r in by_batch.items():
            if not (isinstance(r, dict) and "torch_median_ms" in r):
                continue
            for t in r.get("thread_counts", []):  # the same thread count on both sides
                e = r.get(f"threads_{t}", {})
                lines.append(f"| {model} | {batch} | {t} / {t} | {_f(e.get('torch_median_ms'), 1)} | "
                             f"{_f(e.get('ort_median_ms'), 1)} | {_f(e.get('speedup'))} |")
            lines.append(f"| {model} | {batch} | best: {r.get('torch_threads', '?')} / {r.get('ort_threads', '?')} | "
                         f"{_f(r['torch_median_ms'], 1)} | {_f(r['ort_median_ms'], 1)} | **{_f(r.get('speedup'))}** |")
            if "ort_decode_median_ms" in r:
                lines.append(f"| {model}, ORT via `OnnxGenerator.decode` (chunks of {res['ort_vs_torch'].get('decode_batch', '?')}) | "
                             f"{batch} | best: {r.get('torch_threads', '?')} / {r.get('ort_decode_threads', '?')} | "
                             f"{_f(r['torch_median_ms'], 1)} | {_f(r['ort_decode_median_ms'], 1)} | {_f(r.get('speedup_decode_path'))} |")
            for variant, key, label in (("ort_spin", "speedup_spinning", "ORT threads spinning (`--spin`)"),
                                        ("ort_int8", "speedup_int8", "int8 (`decoder.int8.onnx`)"),
                                        ("ort_int8_spin", "speedup_int8_spinning", "int8, threads spinning")):
                if f"{variant}_median_ms" in r:
                    lines.append(f"| {model}, {label} | {batch} | best: {r.get('torch_threads', '?')} / "
                                 f"{r.get(f'{variant}_threads', '?')} | {_f(r['torch_median_ms'], 1)} | "
                                 f"{_f(r[f'{variant}_median_ms'], 1)} | **{_f(r.get(key))}** |")
    png, load = res.get("text_to_png") or {}, res.get("server_load_test") or {}
    if png:
        lines += ["", f"text -> PNG: p50 {_f(png.get('p50_ms'), 1)} ms, p99 {_f(png.get('p99_ms'), 1)} ms "
                      f"({png.get('requests')} prompts)."]
    prior = res.get("text_to_png_cell_prior") or {}
    if prior:
        lines += [f"text -> PNG, generate from the cell prior (`make run` size, 64 steps): p50 {_f(prior.get('p50_ms'), 1)} ms, "
                  f"p99 {_f(prior.get('p99_ms'), 1)} ms ({prior.get('requests')} prompts)."]
    if load:
        lines += [f"Server load test: {load.get('clients')} clients, {load.get('requests')} requests, "
                  f"{_f(load.get('throughput_rps'), 1)} req/s, p50 {_f(load.get('p50_ms'), 0)} ms, "
                  f"p99 {_f(load.get('p99_ms'), 0)} ms, errors {load.get('errors')}."]
    return lines


def md_rate_distortion(res: dict) -> list[str]:
    at = res.get("codec_psnr_at_bits", {})
    trained = f"decoders trained on {res.get('n_train')} images x {res.get('epochs')} epochs" + (", bf16" if res.get("bf16") else "")
    lines = [f"Held-out {res.get('data')}, {res.get('n_test')} images ({trained}); PSNR over the set (dB).", "",
             "| bits / image | bitlatent | JPEG | WebP |", "| ---: | ---: | ---: | ---: |"]
    for o in sorted(res.get("ours", []), key=lambda o: o["bits_per_image"]):
        b = o["bits_per_image"]
        lines.append(f"| {b:,} | {_f(o['psnr'])} | {_f(at.get('jpeg', {}).get(str(b), at.get('jpeg', {}).get(b)))} | "
                     f"{_f(at.get('webp', {}).get(str(b), at.get('webp', {}).get(b)))} |")
    return lines


def md_gpu_check(res: dict) -> list[str]:
    """``gpu_check.json``: its figures, then each check passed / failed and what was skipped."""
    lines = ["| figure | value |", "| --- | ---: |"]
    lines += [f"| {k} | {_f(v) if not isinstance(v, list) else ', '.join(map(str, v))} |" for k, v in res.get("figures", {}).items()]
    lines += ["", "| check | result |", "| --- | --- |"]
    lines += [f"| {k} | {'passed' if c.get('passed') else 'FAILED ' + str(c.get('error', ''))} |" for k, c in res.get("checks", {}).items()]
    lines += [f"| {k} | skipped: {why} |" for k, why in res.get("skipped", {}).items()]
    return lines


def md_generic(res: dict, prefix: str = "") -> list[str]:
    lines = []

    def walk(x, p):
        if isinstance(x, dict):
            for k, v in x.items():
                if k != "machine":
                    walk(v, f"{p}.{k}" if p else k)
        elif isinstance(x, list):
            if x and not isinstance(x[0], (dict, list)) and len(x) <= 8:
                lines.append(f"| {p} | {', '.join(_f(v) for v in x)} |")
        else:
            lines.append(f"| {p} | {_f(x)} |")

    walk(res, prefix)
    return ["| figure | value |", "| --- | ---: |", *lines[:80]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="Small sizes: a few minutes in all.")
    parser.add_argument("--only", nargs="+", default=None, help="Run only these benchmarks (names).")
    parser.add_argument("--collect-only", action="store_true", help="Do not run anything; gather existing results.")
    args = parser.parse_args()

    runs = []
    for name, script_args, timeout in plan(args.quick, gpu=gpu_available()):
        if args.collect_only or (args.only and name not in args.only):
            runs.append({"name": name, "status": "not run"})
            continue
        runs.append(run_one(name, script_args, timeout))

    results, plots = {}, []
    for r in runs:
        path = RESULTS / f"{r['name']}.json"
        if path.exists():
            results[r["name"]] = json.loads(path.read_text())
            if r["status"] in ("not run", "failed", "absent"):
                r["note"] = f"results/{r['name']}.json is from an earlier run ({results[r['name']].get('machine', {}).get('date')})"
    for name, fn in (("ingest", plot_ingest), ("inference", plot_inference), ("inference_cuda", plot_inference)):
        if name in results:
            try:
                p = fn(results[name]) if name == "ingest" else fn(results[name], name)
                if p:
                    plots.append(str(p.relative_to(PROJECT)))
            except Exception as exc:  # noqa: BLE001
                print(f"plot {name} failed: {exc}")
    plots += sorted(str(p.relative_to(PROJECT)) for p in RESULTS.glob("*.png") if str(p.relative_to(PROJECT)) not in plots)

    info = {"machine": machine(), "versions": versions(), "quick": args.quick, "runs": runs,
            "plots": plots, "results": results}
    (HERE / "results.json").write_text(json.dumps(info, indent=2, default=str))

    m = info["machine"]
    md = ["# Benchmark results", "",
          f"Generated by `python benchmarks/run_all.py{' --quick' if args.quick else ''}` on {m['date']}: "
          f"{m['cpu']}, {m['cores']} cores, {m['memory_gb']} GB{', GPU ' + m['gpu'] if 'gpu' in m else ', CPU only'}.", "",
          "Versions: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()) + ".", "",
          "| benchmark | status | seconds | note |", "| --- | --- | ---: | --- |"]
    for r in runs:
        md.append(f"| {r['name']} | {r['status']} | {_f(r.get('seconds'), 1)} | {r.get('note', '')} |")
    md.append("")
    render = {"ingest": md_ingest, "vae_comparison": md_vae, "adaptation_speed": md_adaptation,
              "inference": md_inference, "rate_distortion": md_rate_distortion, "gpu_check": md_gpu_check}
    for name, res in results.items():
        date = res.get("machine", {}).get("date", "?")
        where = res.get("machine", {}).get("gpu", "GPU") if res.get("device") == "cuda" else "CPU"
        md += [f"## {name} (measured {date}, {where})", ""]
        try:
            md += render.get(script_of(name), md_generic)(res)
        except Exception as exc:  # noqa: BLE001
            md += [f"(could not render: {exc})", *md_generic(res)]
        md.append("")
    if plots:
        md += ["## Plots", "", *[f"![{Path(p).stem}]({Path(p).relative_to('benchmarks')})" for p in plots], ""]
    (HERE / "results.md").write_text("\n".join(md))
    print(f"wrote {HERE / 'results.json'} and {HERE / 'results.md'}")
    failed = [r["name"] for r in runs if r["status"] == "failed"]
    if failed:
        print(f"failed: {failed}")


if __name__ == "__main__":
    main()
