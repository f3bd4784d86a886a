"""The benchmark harness: the plan (GPU runs beside the CPU ones), device checks, and one real
benchmark run end to end at a tiny size, its results written to a temporary folder."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import run_all  # noqa: E402
from common import result_name  # noqa: E402


def test_plan_adds_gpu_runs_only_with_a_gpu():
    cpu = run_all.plan(quick=True)
    names = [n for n, _, _ in cpu]
    assert names == ["ingest", "vae_comparison", "adaptation_speed", "inference"]
    assert all("--device" not in args for _, args, _ in cpu)
    full = [n for n, _, _ in run_all.plan(quick=False)]
    assert full == ["ingest", "vae_comparison", "adaptation_speed", "rate_distortion", "decoder_ceiling", "inference"]
    gpu = run_all.plan(quick=False, gpu=True)
    cuda = {n: args for n, args, _ in gpu if n.endswith("_cuda")}
    assert set(cuda) == {f"{n}_cuda" for n in run_all.GPU_BENCHMARKS}  # ingest has no GPU part
    assert all(args[-2:] == ["--device", "cuda"] for args in cuda.values())
    assert run_all.script_of("rate_distortion_cuda") == "rate_distortion"
    assert result_name("inference", "cpu") == "inference" and result_name("inference", "cuda") == "inference_cuda"


def _run(script: str, *args: str, results: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "BITLATENT_BENCH_RESULTS": str(results), "ORT_DISABLE_TELEMETRY": "1"}
    return subprocess.run([sys.executable, str(BENCH / script), *args], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    done = _run("adaptation_speed.py", "--device", "cuda", "--quick", results=tmp_path)
    assert done.returncode != 0 and "torch sees no GPU" in done.stderr
    assert not list(tmp_path.iterdir())


def test_vae_comparison_runs_end_to_end(tmp_path):
    done = _run("vae_comparison.py", "--no-flickr", "--train", "48", "--test", "16", "--budget", "2",
                "--repeats", "2", "--fit-steps", "5", results=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    res = json.loads((tmp_path / "vae_comparison.json").read_text())
    d = res["datasets"]["synthetic32"]
    assert res["device"] == "cpu" and d["bits_per_image"] == 512
    assert d["parameters"]["vae"]["total"] > d["parameters"]["decoder_only"]  # the encoder is extra
    assert d["parameters"]["vae"]["total"] == d["parameters"]["decoder_only"] + d["parameters"]["vae"]["encoder"]
    for model in ("decoder_only", "vae"):
        assert len(d["steps"]["step_seconds_all"][model]) == 2
        assert d["steps"]["memory"][model]["total_bytes"] > 0
        assert d["race"][model]["heldout_psnr_final"] > 5.0  # a real image, not NaN or black
    assert (tmp_path / "vae_comparison_synthetic32.png").stat().st_size > 0


def test_fit_settings_parses_a_setting_and_rejects_a_malformed_one():
    import fit_settings

    assert fit_settings.parse_setting("1.0,0.5,0.9,100") == {"fit_lr": 1.0, "fit_betas": (0.5, 0.9), "fit_steps": 100}
    with pytest.raises(SystemExit, match="fit_lr,beta1,beta2,fit_steps"):
        fit_settings.parse_setting("1.0,0.5")


def test_decoder_ceiling_scores_reconstructions_end_to_end(tmp_path):
    done = _run("decoder_ceiling.py", "--only", "s32_8x8x8", "--train", "16", "--heldout", "8", "--epochs", "2",
                results=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    res = json.loads((tmp_path / "decoder_ceiling.json").read_text())
    d = res["decoders"]["s32_8x8x8"]
    assert res["heldout_images"] == 8 and d["bits_per_image"] == 512 and d["image_size"] == 32
    assert d["heldout_psnr"] > 5.0  # a real image, not NaN or black
    for scores in (d["heldout_attributes"], d["pretrain_attributes"]):
        assert set(scores) >= {"accuracy", "shape", "colour", "size", "position"}
        assert all(0.0 <= v <= 1.0 for v in scores.values())
