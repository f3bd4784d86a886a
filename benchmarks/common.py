"""Shared helpers for benchmarks: machine description and result files."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
from pathlib import Path

import psutil

# Where results/<name>.json and the plots go (tests point it at a temporary folder).
RESULTS = Path(os.environ.get("BITLATENT_BENCH_RESULTS") or Path(__file__).parent / "results")


def machine() -> dict:
    """The machine and date a figure was measured on."""
    info = {
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    return info


def write_result(name: str, payload: dict) -> Path:
    """Write ``results/<name>.json`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2))
    os.replace(tmp, path)
    return path


def add_device_argument(parser) -> None:
    """``--device cpu`` (the default: the CPU figures) or ``--device cuda`` (the GPU figures, written
    beside the CPU ones as ``results/<name>_cuda.json``; ``run_all.py`` adds these runs when torch
    sees a GPU)."""
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                        help="Where torch (and ONNX Runtime, for inference) runs; cuda needs a GPU.")


def check_device(device: str) -> None:
    import torch

    if device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: torch sees no GPU (CPU-only torch, or no CUDA device)")


def result_name(name: str, device: str) -> str:
    """``results/<name>.json`` for the CPU figures, ``<name>_cuda.json`` for the GPU ones."""
    return name if device == "cpu" else f"{name}_{device}"


def synchronize(device: str) -> None:
    """Wait for queued GPU work, so a timer around a CUDA call measures the work, not the launch."""
    if device == "cuda":
        import torch

        torch.cuda.synchronize()
