"""benchmarks/gpu_check.py as `make gpu-check` runs it (``PYTHONPATH=src python ...``, no install):
on this machine without a GPU its CPU parts run at a tiny size, it says what it skipped, exits 0
and writes the JSON of figures; it imports no Kedro, Great Expectations or DVC."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

PROJECT = Path(__file__).resolve().parents[2]
SCRIPT = PROJECT / "benchmarks" / "gpu_check.py"


def _load():
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))
    return gpu_check


def test_the_fallback_flickr8k_settings_equal_conf_flickr8k():
    gpu_check = _load()
    params = yaml.safe_load((PROJECT / "conf" / "flickr8k" / "parameters.yml").read_text())
    assert gpu_check.FLICKR8K_DECODER == {"image_size": params["data"]["image_size"], **params["decoder"]}
    assert gpu_check.flickr8k_settings() == (gpu_check.FLICKR8K_DECODER, gpu_check.FLICKR8K_TRAIN)
    decoder = gpu_check.FLICKR8K_DECODER
    assert decoder["image_size"] == 64 and decoder["latent_h"] * decoder["latent_w"] * decoder["bits_per_cell"] == 2048


def test_its_imports_pull_in_no_pipeline_tools():
    code = ("import sys; sys.path.insert(0, 'benchmarks'); import gpu_check; "
            "import bitlatent.text.train, bitlatent.text.encoder, bitlatent.export.onnx_export, bitlatent.inference.providers, "
            "bitlatent.core.distributed; "
            "heavy = sorted({m.split('.')[0] for m in sys.modules} & {'kedro', 'great_expectations', 'dvc', 'kedro_datasets', "
            "'transformers', 'pandas'}); print(heavy); assert not heavy, heavy")  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    done = subprocess.run([sys.executable, "-c", code], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the run of a machine without a GPU")
def test_without_a_gpu_it_runs_the_cpu_parts_says_what_it_skipped_and_exits_0(tmp_path):
    out = tmp_path / "gpu_check.json"
    env = {**os.environ, "PYTHONPATH": str(PROJECT / "src")}
    done = subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], cwd=PROJECT, env=env,
                          capture_output=True, text=True, timeout=600)  # fmt: skip
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-4000:]
    report = json.loads(out.read_text())
    assert report["size"] == "cpu-tiny" and report["passed"] is True
    assert set(report["checks"]) == {"cpu_resume", "pretrain_and_fit", "onnx_decode", "text_and_prior", "torchrun_1"}
    assert all(check["passed"] for check in report["checks"].values())
    resume = report["checks"]["cpu_resume"]
    assert resume["max_abs_weight_difference"] <= 1e-5 and resume["same_latent_bytes"] >= 0.999
    for name in ("cuda_mixed_precision", "cuda_resume", "torchrun_2"):
        assert name in report["skipped"] and f"SKIPPED {name}: " in log
    assert "no GPU" in report["skipped"]["cuda_mixed_precision"]
    figures = report["figures"]
    for key in ("pretrain_images_per_s", "latents_fitted_per_s", "decoded_images_per_s", "text_captions_per_s",
                "torchrun_1_images_per_s"):  # fmt: skip
        assert figures[key] > 0, key
    assert figures["gpu"] is None and figures["peak_gpu_memory_gb"] is None
    assert report["environment"]["torch"] == torch.__version__
    assert figures["decode_providers"] == report["checks"]["onnx_decode"]["providers"]
    if not report["checks"]["onnx_decode"]["on_cuda"]:
        assert "onnx_decode_cuda" in report["skipped"]
    assert report["checks"]["text_and_prior"]["prior_curves"] == ["prior_ce"]
    assert report["checks"]["pretrain_and_fit"]["image_size"] == 32  # the tiny CPU size, not Flickr8k's
