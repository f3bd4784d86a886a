"""The prepared GPU check: one script to run the day a GPU is lent, writing the GPU figures.

    PYTHONPATH=src python benchmarks/gpu_check.py            # make gpu-check; under 8 minutes on one GPU
    PYTHONPATH=src python benchmarks/gpu_check.py --out X.json

Needs only torch, numpy, safetensors, onnx and onnxruntime (no install, no Kedro, Great
Expectations or DVC; tqdm and Pillow are used when present, replaced when not). Every check is a
plain function (pytest may be absent on the GPU machine):

* ``cuda_mixed_precision``: pretraining and latent fitting under bf16 autocast on CUDA lower the loss.
* ``cuda_resume``: a pretraining run stopped after a checkpoint and resumed equals the
  uninterrupted run (deterministic cuDNN / cuBLAS).
* ``pretrain``: pretraining at the Flickr8k size (64x64 images, 2,048 bits: conf/flickr8k's
  decoder and train settings) on synthetic scenes (``bitlatent.data.synthetic``), bf16: images/s.
* ``fit``: latent fitting with that decoder: latents fitted/s.
* ``onnx_decode``: the decoder exported to ONNX, decoded through ONNX Runtime on CUDA when its
  session really gets CUDA (``bitlatent.inference.providers``): decoded images/s and the provider.
* ``text_and_prior``: text-to-latent and cell-prior training steps on synthetic MiniLM-shaped token
  states (384 wide; no model download): captions/s.
* ``torchrun_1`` / ``torchrun_2``: the pretraining under ``torchrun`` with 1 process, and 2 when
  two GPUs are there (``core.distributed``): images/s.

It writes ``benchmarks/results/gpu_check.json`` (``gpu_check_cpu.json`` without a GPU, so a CPU
run never replaces the GPU figures; ``run_all.py`` gathers it): the GPU's name, torch / CUDA / cuDNN /
onnxruntime versions, peak GPU memory, each check's figures and whether it passed, and what was
skipped and why. Without a GPU it runs the CPU-capable parts at a tiny size (seconds), prints what
it skipped, and exits 0 when they pass; it exits 1 when a check that ran failed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import types
import warnings
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

for _key, _value in (("ORT_DISABLE_TELEMETRY", "1"), ("DO_NOT_TRACK", "1"), ("HF_HUB_OFFLINE", "1"),
                     ("CUBLAS_WORKSPACE_CONFIG", ":4096:8")):  # the last: deterministic cuBLAS (cuda_resume)
    os.environ.setdefault(_key, _value)

HERE = Path(__file__).resolve().parent
PROJECT = HERE.parent
RESULTS = Path(os.environ.get("BITLATENT_BENCH_RESULTS") or HERE / "results")
"""Where the JSON goes by default (``benchmarks/common.py``'s folder; tests point it elsewhere)."""
FLICKR8K_PARAMETERS = PROJECT / "conf" / "flickr8k" / "parameters.yml"
FLICKR8K_DECODER = {"image_size": 64, "latent_h": 16, "latent_w": 16, "bits_per_cell": 8,
                    "widths": [128, 64, 32], "blocks_per_stage": [2, 1, 1]}  # fmt: skip
"""conf/flickr8k's decoder (64x64, 16 x 16 cells x 8 bits = 2,048 bits), used when PyYAML is
absent; tests/benchmarks/test_gpu_check.py keeps it equal to the YAML."""
FLICKR8K_TRAIN = {"batch_size": 32, "latent_lr": 0.2, "fit_steps": 100, "fit_lr": 0.3, "fit_betas": [0.9, 0.99]}
"""conf/flickr8k's pretraining and fitting settings, likewise."""
MINILM_WIDTH = 384
"""Width of all-MiniLM-L6-v2's token states, which the text model reads."""


def _install_tqdm_stand_in() -> None:
    """``bitlatent.core`` shows progress with tqdm; a machine without it gets a silent stand-in."""
    try:
        import tqdm.auto  # noqa: F401
    except ImportError:
        def tqdm(iterable=None, *args: Any, **kwargs: Any):  # noqa: ARG001
            bar = types.SimpleNamespace(update=lambda *a, **k: None, set_postfix=lambda *a, **k: None,
                                        close=lambda: None, __iter__=lambda self: iter(iterable or ()))  # fmt: skip
            return iterable if iterable is not None else bar

        module, auto = types.ModuleType("tqdm"), types.ModuleType("tqdm.auto")
        module.tqdm = auto.tqdm = tqdm
        module.auto = auto
        sys.modules.update({"tqdm": module, "tqdm.auto": auto})


_install_tqdm_stand_in()

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bitlatent.core.decoder import DecoderConfig  # noqa: E402
from bitlatent.core.train import TrainConfig, fit_latents, pretrain  # noqa: E402


@dataclass(frozen=True)
class Size:
    """How big each check runs: the GPU sizes, or a tiny CPU run of seconds."""

    images: int
    """Synthetic images pretrained on."""
    fit_images: int
    """Images whose latents are fitted."""
    epochs: int
    """Pretraining epochs."""
    fit_steps: int
    """Fitting steps per chunk."""
    captions: int
    """Synthetic captions of the text / prior training."""
    text_epochs: int
    decode_images: int
    """Latents decoded through ONNX Runtime."""
    decoder: dict[str, Any]
    train: dict[str, Any]


GPU_SIZE = Size(images=4096, fit_images=1024, epochs=2, fit_steps=FLICKR8K_TRAIN["fit_steps"], captions=8192,
                text_epochs=2, decode_images=4096, decoder={}, train={})  # fmt: skip
CPU_SIZE = Size(images=32, fit_images=16, epochs=2, fit_steps=3, captions=64, text_epochs=1, decode_images=32,
                decoder={"image_size": 32, "latent_h": 8, "latent_w": 8, "bits_per_cell": 2, "widths": [16, 8, 8],
                         "blocks_per_stage": [1, 1, 1]},
                train={"batch_size": 8, "fit_batch_size": 16})  # fmt: skip


def flickr8k_settings() -> tuple[dict[str, Any], dict[str, Any]]:
    """conf/flickr8k's decoder and train settings: from the YAML when PyYAML is there, else the copies above."""
    try:
        import yaml
    except ImportError:
        return dict(FLICKR8K_DECODER), dict(FLICKR8K_TRAIN)
    params = yaml.safe_load(FLICKR8K_PARAMETERS.read_text())
    decoder = {"image_size": params["data"]["image_size"], **params["decoder"]}
    pre, fit = params["pretraining"]["train"], params["latent_adaptation"]["train"]
    train = {"batch_size": pre["batch_size"], "latent_lr": pre["latent_lr"], "fit_steps": fit["fit_steps"],
             "fit_lr": fit["fit_lr"], "fit_betas": list(fit["fit_betas"])}  # fmt: skip
    return decoder, train


def configs(size: Size, device: str) -> tuple[DecoderConfig, TrainConfig]:
    """The decoder and train configs of a check: Flickr8k's on the GPU, ``size``'s tiny ones on CPU."""
    decoder, train = flickr8k_settings()
    decoder, train = {**decoder, **size.decoder}, {**train, **size.train}
    train["fit_betas"] = tuple(train["fit_betas"])
    cfg = TrainConfig(device=device, amp=True, progress=False, epochs=size.epochs, warmup_steps=10,
                      checkpoint_every=10**9, **{**train, "fit_steps": min(train["fit_steps"], size.fit_steps)})  # fmt: skip
    return DecoderConfig(**decoder), cfg


def synthetic_images(n: int, image_size: int) -> tuple[np.ndarray, str]:
    """uint8 (n, S, S, 3) scenes of ``bitlatent.data.synthetic``; smooth random images when Pillow
    (which its textures need) is absent. Returns the images and where they came from."""
    try:
        from bitlatent.data.synthetic import SyntheticConfig, render_sample
    except ImportError as error:
        rng = np.random.default_rng(0)
        coarse = rng.random((n, image_size // 8, image_size // 8, 3))
        images = np.repeat(np.repeat(coarse, 8, axis=1), 8, axis=2)
        return (images * 255).astype(np.uint8), f"blocky random images ({error})"
    cfg = SyntheticConfig(image_size=image_size)
    return np.stack([render_sample(i, cfg)[0] for i in range(n)]), "bitlatent.data.synthetic"


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    _synchronize()
    start = time.perf_counter()
    out = fn()
    _synchronize()
    return out, time.perf_counter() - start


# ----------------------------------------------------------------------------- the checks


def check_mixed_precision(images: np.ndarray, size: Size) -> dict[str, Any]:
    """bf16 pretraining and fitting on CUDA lower the loss and keep it finite."""
    dec, cfg = configs(size, "cuda")
    cfg = replace(cfg, epochs=3)
    result = pretrain(images[:256], dec, cfg)
    loss = result.curves["loss"]
    fit = fit_latents(result.decoder, images, cfg, indices=np.arange(256, 320))
    first, last = float(np.mean(loss[:4])), float(np.mean(loss[-4:]))
    passed = bool(next(result.decoder.parameters()).is_cuda and last < first and np.isfinite(fit.mse).all())
    return {"passed": passed, "loss_first": first, "loss_last": last, "fit_psnr": float(fit.psnr),
            "amp_dtype": "bfloat16" if torch.cuda.is_bf16_supported() else "float16"}  # fmt: skip


class _Stop(Exception):
    pass


def check_resume(images: np.ndarray, size: Size, device: str) -> dict[str, Any]:
    """A run stopped after its checkpoint at step 6 and resumed equals the uninterrupted run."""
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    torch.use_deterministic_algorithms(True, warn_only=True)
    dec, cfg = configs(size, device)
    cfg = replace(cfg, checkpoint_every=6, epochs=2)
    n = min(len(images), 8 * cfg.batch_size)

    def stop(step: int, record: dict) -> None:
        if step == 8:
            raise _Stop

    try:
        with tempfile.TemporaryDirectory() as folder:
            try:
                pretrain(images[:n], dec, cfg, checkpoint_dir=folder, callback=stop)
            except _Stop:
                pass
            resumed = pretrain(images[:n], dec, cfg, checkpoint_dir=folder)
        full = pretrain(images[:n], dec, cfg)
    finally:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
    worst = max(float((a.float() - b.float()).abs().max()) for a, b in
                zip(resumed.decoder.state_dict().values(), full.decoder.state_dict().values()))  # fmt: skip
    loss_gap = float(np.max(np.abs(np.subtract(resumed.curves["loss"], full.curves["loss"]))))
    same_bits = float((resumed.latents.packed() == full.latents.packed()).mean())
    passed = worst <= 1e-5 and loss_gap <= 1e-5 and same_bits >= 0.999
    return {"passed": passed, "device": device, "max_abs_weight_difference": worst,
            "max_abs_loss_difference": loss_gap, "same_latent_bytes": same_bits, "steps": len(full.curves["loss"])}  # fmt: skip


def check_pretrain_and_fit(images: np.ndarray, size: Size, device: str, work: Path) -> dict[str, Any]:
    """Pretraining (images/s) and fitting (latents/s) at ``size``; saves the decoder for the ONNX check."""
    from bitlatent.core.decoder import save_decoder

    dec, cfg = configs(size, device)
    result, seconds = _timed(lambda: pretrain(images, dec, cfg))
    fit_rows = np.arange(min(size.fit_images, len(images)))
    fit, fit_seconds = _timed(lambda: fit_latents(result.decoder, images, cfg, indices=fit_rows))
    save_decoder(result.decoder.cpu(), work / "decoder")
    loss = result.curves["loss"]
    return {"passed": bool(np.isfinite(loss).all() and np.isfinite(fit.mse).all()),
            "pretrain_images_per_s": len(images) * cfg.epochs / seconds, "pretrain_seconds": seconds,
            "images": len(images), "epochs": cfg.epochs, "batch_size": cfg.batch_size,
            "bits_per_image": dec.latent_h * dec.latent_w * dec.bits_per_cell, "image_size": dec.image_size,
            "pretrain_psnr_last": float(result.curves["psnr"][-1]),
            "latents_fitted_per_s": len(fit_rows) / fit_seconds, "fit_seconds": fit_seconds,
            "fit_steps": cfg.fit_steps, "fit_psnr": float(fit.psnr)}  # fmt: skip


def check_onnx_decode(work: Path, size: Size) -> dict[str, Any]:
    """The decoder through ONNX Runtime: CUDA when the session really gets it, else the CPU."""
    from bitlatent.core.decoder import load_decoder
    from bitlatent.export.onnx_export import export_decoder
    from bitlatent.inference.generator import session_options
    from bitlatent.inference.providers import open_session

    decoder = load_decoder(work / "decoder")
    path = export_decoder(decoder, work / "decoder.onnx")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        session, placement = open_session(path, session_options(), "auto")
    spec = decoder.latent_spec
    bits = np.random.default_rng(0).integers(0, 2, size=(size.decode_images, *spec.shape), dtype=np.uint8)
    batch = 256 if placement.on_cuda else 16
    session.run(["image"], {"bits": bits[:batch]})  # warm-up: first runs allocate
    start = time.perf_counter()
    for lo in range(0, len(bits), batch):
        session.run(["image"], {"bits": bits[lo : lo + batch]})
    seconds = time.perf_counter() - start
    return {"passed": True, "decoded_images_per_s": len(bits) / seconds, "providers": list(placement.providers),
            "on_cuda": placement.on_cuda, "batch": batch,
            "fallback_warning": placement.warning or next((str(w.message) for w in caught), None)}  # fmt: skip


def synthetic_features(n: int, seed: int = 0):
    """``TextFeatures`` of ``n`` captions of 8..20 random MiniLM-shaped token states (384 wide)."""
    from bitlatent.text.encoder import TextFeatures

    rng = np.random.default_rng(seed)
    lengths = rng.integers(8, 21, size=n)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.standard_normal((int(offsets[-1]), MINILM_WIDTH)).astype(np.float16)
    pooled = rng.standard_normal((n, MINILM_WIDTH))
    pooled = (pooled / np.linalg.norm(pooled, axis=1, keepdims=True)).astype(np.float16)
    return TextFeatures(tokens, offsets, pooled)


def check_text_and_prior(size: Size, device: str) -> dict[str, Any]:
    """Text-to-latent training with a cell prior on synthetic features: captions/s, finite losses."""
    from bitlatent.text.model import TextToLatentConfig
    from bitlatent.text.train import AlignmentData, TextTrainConfig, train_text_to_latent

    dec, _ = configs(size, device)
    rng = np.random.default_rng(1)
    images = max(size.captions // 4, 2)
    bits = rng.integers(0, 2, size=(images, dec.bits_per_cell, dec.latent_h, dec.latent_w), dtype=np.uint8)
    data = AlignmentData(synthetic_features(size.captions), bits, np.arange(size.captions) % images)
    model = TextToLatentConfig(latent_h=dec.latent_h, latent_w=dec.latent_w, bits_per_cell=dec.bits_per_cell,
                               width=128, prior_layers=2)  # fmt: skip
    cfg = TextTrainConfig(device=device, progress=False, epochs=size.text_epochs, batch_size=128, warmup_steps=10,
                          checkpoint_every=10**9)  # fmt: skip
    result, seconds = _timed(lambda: train_text_to_latent(data, model, cfg))
    curves = result.curves
    prior = [k for k in curves if "prior" in k]
    finite = all(np.isfinite(curves[k]).all() for k in ("loss", *prior))
    return {"passed": bool(finite and prior), "captions_per_s": size.captions * cfg.epochs / seconds,
            "seconds": seconds, "steps": len(curves["loss"]), "loss_last": float(curves["loss"][-1]),
            "prior_curves": prior}  # fmt: skip


def check_torchrun(processes: int, images: np.ndarray, size: Size, device: str, work: Path) -> dict[str, Any]:
    """Pretraining under ``torchrun --nproc_per_node=processes`` (this script's ``--worker``): images/s."""
    folder = work / f"torchrun_{processes}"
    folder.mkdir(parents=True, exist_ok=True)
    np.save(folder / "images.npy", images)
    (folder / "size.json").write_text(json.dumps({"device": device, **size.__dict__}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT / "src"), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
           str(Path(__file__).resolve()), "--worker", str(folder)]  # fmt: skip
    done = subprocess.run(cmd, env=env, cwd=PROJECT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        return {"passed": False, "returncode": done.returncode, "output_tail": (done.stdout + done.stderr)[-3000:]}
    out = json.loads((folder / "result.json").read_text())
    return {"passed": True, "processes": processes, **out}


def worker(folder: Path) -> int:
    """One ``torchrun`` process: ``pretrain`` in the process group ``torchrun`` describes."""
    from bitlatent.core.distributed import ProcessGroup, init_from_env

    raw = json.loads((folder / "size.json").read_text())
    device = raw.pop("device")
    size = Size(**raw)
    joined = init_from_env(use_cuda=device == "cuda")
    warnings.simplefilter("ignore")
    images = np.load(folder / "images.npy", mmap_mode="r")
    dec, cfg = configs(size, device)
    result, seconds = _timed(lambda: pretrain(images, dec, cfg))
    if ProcessGroup.current().rank == 0:
        (folder / "result.json").write_text(json.dumps({
            "pretrain_images_per_s": len(images) * cfg.epochs / seconds, "seconds": seconds,
            "world_size": ProcessGroup.current().world_size, "loss_last": float(result.curves["loss"][-1])}))  # fmt: skip
    if joined:
        torch.distributed.destroy_process_group()
    return 0


# ----------------------------------------------------------------------------- the run


def environment() -> dict[str, Any]:
    """The machine: GPU, torch / CUDA / cuDNN / onnxruntime versions."""
    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
                            "gpus": torch.cuda.device_count(), "cpu_cores": os.cpu_count()}  # fmt: skip
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        import onnxruntime as ort

        info["onnxruntime"] = ort.__version__
        info["onnxruntime_providers"] = ort.get_available_providers()
    except ImportError:
        info["onnxruntime"] = None
    return info


def run(out: Path) -> int:
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    size = GPU_SIZE if cuda else CPU_SIZE
    env = environment()
    report: dict[str, Any] = {"device": device, "environment": env, "size": "gpu" if cuda else "cpu-tiny",
                              "machine": {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                          **({"gpu": env["gpu"]} if cuda else {})},
                              "checks": {}, "skipped": {}}  # fmt: skip
    dec, _ = configs(size, device)
    images, source = synthetic_images(size.images, dec.image_size)
    report["images_source"] = source
    # the tiny CPU decoder outsizes its 32 latents on purpose: no capacity warning per run
    warnings.filterwarnings("ignore", message="decoder capacity")
    logging.getLogger("bitlatent.core.capacity").setLevel(logging.ERROR)
    start = time.perf_counter()

    def skip(name: str, reason: str) -> None:
        report["skipped"][name] = reason
        print(f"SKIPPED {name}: {reason}", flush=True)

    def attempt(name: str, fn: Callable[[], dict[str, Any]]) -> None:
        t0 = time.perf_counter()
        try:
            result = fn()
        except Exception as error:  # noqa: BLE001 - a failed check is recorded, the others still run
            result = {"passed": False, "error": f"{type(error).__name__}: {error}"}
        result["wall_s"] = round(time.perf_counter() - t0, 2)
        report["checks"][name] = result
        print(f"{'ok    ' if result['passed'] else 'FAILED'} {name} ({result['wall_s']} s): "
              f"{ {k: v for k, v in result.items() if k not in ('passed', 'output_tail')} }", flush=True)  # fmt: skip

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
            attempt("cuda_mixed_precision", lambda: check_mixed_precision(images, size))
        else:
            skip("cuda_mixed_precision", "torch sees no GPU (bf16 autocast on CUDA needs one)")
        attempt("cuda_resume" if cuda else "cpu_resume", lambda: check_resume(images, size, device))
        if not cuda:
            skip("cuda_resume", "torch sees no GPU: the same resume check ran on the CPU (cpu_resume)")
        attempt("pretrain_and_fit", lambda: check_pretrain_and_fit(images, size, device, work))
        if (work / "decoder").exists():
            attempt("onnx_decode", lambda: check_onnx_decode(work, size))
            decode = report["checks"]["onnx_decode"]
            if decode.get("passed") and not decode.get("on_cuda"):
                skip("onnx_decode_cuda", decode.get("fallback_warning") or "onnxruntime lists no CUDAExecutionProvider "
                     "(the gpu extra, onnxruntime-gpu, is not installed): decoded on the CPU")  # fmt: skip
        attempt("text_and_prior", lambda: check_text_and_prior(size, device))
        attempt("torchrun_1", lambda: check_torchrun(1, images, size, device, work))
        if torch.cuda.device_count() >= 2:
            attempt("torchrun_2", lambda: check_torchrun(2, images, size, device, work))
        else:
            skip("torchrun_2", f"{torch.cuda.device_count()} GPU(s): two processes need two GPUs")

    checks = report["checks"]
    report["figures"] = {
        "gpu": report["environment"].get("gpu"),
        "pretrain_images_per_s": checks.get("pretrain_and_fit", {}).get("pretrain_images_per_s"),
        "latents_fitted_per_s": checks.get("pretrain_and_fit", {}).get("latents_fitted_per_s"),
        "decoded_images_per_s": checks.get("onnx_decode", {}).get("decoded_images_per_s"),
        "decode_providers": checks.get("onnx_decode", {}).get("providers"),
        "text_captions_per_s": checks.get("text_and_prior", {}).get("captions_per_s"),
        "torchrun_1_images_per_s": checks.get("torchrun_1", {}).get("pretrain_images_per_s"),
        "torchrun_2_images_per_s": checks.get("torchrun_2", {}).get("pretrain_images_per_s"),
        "peak_gpu_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 3) if cuda else None,
    }  # fmt: skip
    report["wall_s"] = round(time.perf_counter() - start, 1)
    report["passed"] = all(c["passed"] for c in checks.values())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_suffix(".json.tmp")
    tmp_out.write_text(json.dumps(report, indent=2, default=str))
    os.replace(tmp_out, out)
    failed = [name for name, c in checks.items() if not c["passed"]]
    print(f"wrote {out} in {report['wall_s']} s; "
          + (f"FAILED: {failed}" if failed else f"all {len(checks)} checks passed")
          + (f"; skipped: {sorted(report['skipped'])}" if report["skipped"] else ""), flush=True)  # fmt: skip
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help="Where the JSON goes (default: results/gpu_check.json, gpu_check_cpu.json without a GPU).")
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)  # one torchrun process
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    default = RESULTS / ("gpu_check.json" if torch.cuda.is_available() else "gpu_check_cpu.json")
    return run(args.out or default)


if __name__ == "__main__":
    raise SystemExit(main())
