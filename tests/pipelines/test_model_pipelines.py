"""Tiny end-to-end runs of pretraining → adaptation → evaluation with the real catalog."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from kedro.runner import SequentialRunner

from bitlatent.data.latent_shards import load_latent_shard
from click.testing import CliRunner

from bitlatent.cli import main as bitlatent_cli
from bitlatent.pipelines import alignment, data_validation, decoder_pretraining, evaluation, latent_adaptation
from tests.pipelines.conftest import load_conf, real_catalog

TINY_DECODER = {"latent_h": 8, "latent_w": 8, "bits_per_cell": 8, "widths": [32, 24, 16],
                "blocks_per_stage": [1, 1, 1]}


def tiny_params(**adaptation) -> dict:
    params = {}
    for name in ("data_validation", "decoder_pretraining", "latent_adaptation", "alignment", "evaluation"):
        params.update(load_conf(f"parameters_{name}.yml"))
    params["data"].update({"image_size": 32, "max_pairs": 240, "rows_per_shard": 40, "chunk_rows": 120})
    params["decoder"] = TINY_DECODER
    params["pretraining"]["train"].update({"epochs": 12, "batch_size": 16, "checkpoint_every": 20,
                                           "progress": False})
    params["latent_adaptation"]["train"].update({"fit_steps": 30, "fit_batch_size": 64, "progress": False})
    params["latent_adaptation"].update(adaptation)
    params["alignment"]["model"].update({"width": 32, "layers": 1, "code_bits": 32})
    params["alignment"]["train"].update({"epochs": 2, "batch_size": 32, "progress": False})  # 4 captions per image
    params["evaluation"].update({"codec_images": 20, "grid_images": 4, "generated_captions": 40})
    return params


PIPELINES = {"data_validation": data_validation, "decoder_pretraining": decoder_pretraining,
             "latent_adaptation": latent_adaptation, "alignment": alignment, "evaluation": evaluation}


def run(pipeline: str, params: dict) -> None:
    SequentialRunner().run(PIPELINES[pipeline].create_pipeline(), real_catalog(params))


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """data_validation + decoder_pretraining once for the module."""
    root = tmp_path_factory.mktemp("project")
    cwd = Path.cwd()
    try:
        os.chdir(root)
        params = tiny_params()
        run("data_validation", params)
        run("decoder_pretraining", params)
    finally:
        os.chdir(cwd)
    return root


def test_pretraining_writes_decoder_latents_curves_capacity(trained: Path, monkeypatch):
    monkeypatch.chdir(trained)
    assert Path("data/06_models/decoder").is_dir()
    spec = json.loads(Path("data/06_models/latent_spec.json").read_text())
    assert (spec["h"], spec["w"], spec["bits_per_cell"], spec["image_size"]) == (8, 8, 8, 32)
    shard = load_latent_shard(next(Path("data/06_models/pretrain_latents/pretrain").glob("*.npz")))
    assert shard.bits.dtype == np.uint8 and shard.bits.shape[1] == 8 * 8 * 8 // 8
    capacity = json.loads(Path("data/08_reporting/capacity.json").read_text())
    assert capacity["bits_per_image"] == 512 and capacity["decoder_bits"] > 0
    curves = json.loads(Path("data/08_reporting/pretraining_curves.json").read_text())
    assert curves[-1]["psnr"] > curves[0]["psnr"] and curves[-1]["step"] > curves[0]["step"]
    assert Path("data/08_reporting/pretraining_curves.png").stat().st_size > 1000


def test_adaptation_in_two_jobs_then_evaluation(trained: Path, monkeypatch):
    monkeypatch.chdir(trained)
    for part in (0, 1):
        run("latent_adaptation", tiny_params(shard=part, num_shards=2))
    parts = sorted(Path("data/07_model_output/latents").glob("part-*-of-2"))
    assert [p.name for p in parts] == ["part-0-of-2", "part-1-of-2"]
    done = [json.loads((p / "index.json").read_text()) for p in parts]
    units = done[0]["units"] + done[1]["units"]
    assert len(units) == len(set(units)) >= 3  # disjoint, together every adapt/test shard

    # A rerun of a finished job fits nothing: every shard is skipped.
    run("latent_adaptation", tiny_params(shard=1, num_shards=2))
    again = json.loads((parts[1] / "index.json").read_text())
    assert again["skipped"] == len(again["units"]) and again["images"] == 0

    run("alignment", tiny_params())
    assert Path("data/06_models/text_to_latent/text_to_latent.safetensors").is_file()
    curves = json.loads(Path("data/08_reporting/alignment_curves.json").read_text())
    assert curves[-1]["loss"] < curves[0]["loss"]

    run("evaluation", tiny_params())
    metrics = json.loads(Path("data/08_reporting/metrics.json").read_text())
    text = metrics["alignment"]
    assert 0.0 <= text["t2i_recall@1"] <= text["t2i_recall@5"] <= text["t2i_recall@10"] <= 1.0
    assert text["bit_accuracy"] > 0.5
    generation = metrics["generation"]
    assert generation["captions_seen"] + generation["captions_unseen"] == 40
    assert 0.0 <= generation["attribute_accuracy_unseen"] <= 1.0
    assert set(generation["by_mode"]) == {"retrieve", "generate", "refine"}
    assert generation["by_mode"]["generate"]["attribute_accuracy_unseen"] == generation["attribute_accuracy_unseen"]
    for scores in (*generation["by_mode"].values(), generation["reconstructed"]):
        assert scores["captions_seen"] + scores["captions_unseen"] == 40
        for name in ("seen", "unseen"):  # the four attributes average to the accuracy
            parts = scores[f"attributes_{name}"]
            assert set(parts) == {"shape", "colour", "size", "position", "objects_found"}
            four = (parts["shape"] + parts["colour"] + parts["size"] + parts["position"]) / 4
            assert four == pytest.approx(scores[f"attribute_accuracy_{name}"])
    train_images = sum(metrics["reconstruction"][s]["images"] for s in ("pretrain", "adapt"))
    assert generation["library_images"] == train_images  # never the test latents
    assert Path("data/08_reporting/generation_grid.png").stat().st_size > 1000
    for split in ("pretrain", "adapt", "test"):
        scores = metrics["reconstruction"][split]
        assert scores["psnr"] > 18.0, (split, scores)  # this tiny run reaches 19-20 dB
        assert 0.0 < scores["ssim"] <= 1.0
    assert metrics["capacity"]["bits_per_pixel"] == 0.5
    assert metrics["capacity"]["latent_bits_total"] == 512 * 240
    rd = metrics["rate_distortion"]
    assert rd["bitlatent_test_psnr"] == metrics["reconstruction"]["test"]["psnr"]
    # 512 bits per 32x32 image is below the smallest file either codec can write
    assert rd["webp_psnr_at_same_bits"] is None and rd["webp_min_bits_per_image"] > 512
    assert rd["jpeg_psnr_at_same_bits"] is None and rd["jpeg_min_bits_per_image"] > 512
    webp = json.loads(Path("data/08_reporting/rate_distortion/webp.json").read_text())
    assert {"bits_per_image", "psnr"} <= set(webp[0])
    for png in ("reconstruction_grid.png", "rate_distortion.png"):
        assert Path("data/08_reporting", png).stat().st_size > 1000


def test_generate_and_evaluate_commands(trained: Path, monkeypatch):
    monkeypatch.chdir(trained)
    if not Path("data/06_models/text_to_latent").is_dir():
        pytest.skip("needs the alignment run of test_adaptation_in_two_jobs_then_evaluation")
    runner = CliRunner()
    done = runner.invoke(bitlatent_cli, ["generate", "a small red circle in the top left corner", "a blue star",
                                         "-o", "grid.png", "--samples", "3", "--temperature", "1", "--seed", "1",
                                         "--torch"])
    assert done.exit_code == 0, done.output
    from PIL import Image
    assert Image.open("grid.png").size == (3 * 32, 2 * 32)
    for mode in ("generate", "refine"):  # retrieve is the default
        done = runner.invoke(bitlatent_cli, ["generate", "a red square", "-o", f"{mode}.png", "--mode", mode, "--torch"])
        assert done.exit_code == 0, done.output
    done = runner.invoke(bitlatent_cli, ["generate", " ", "-o", "empty.png"])
    assert done.exit_code != 0 and "empty" in done.output

    (trained / "ext").mkdir(exist_ok=True)
    lines = ["image,caption"]
    from bitlatent.data.synthetic import SyntheticConfig, render_sample
    for index in range(6):
        pixels, caption, _ = render_sample(10_000 + index, SyntheticConfig(image_size=32))
        Image.fromarray(pixels).save(trained / "ext" / f"{index}.png")
        lines.append(f'{index}.png,"{caption}"')
    (trained / "ext" / "captions.csv").write_text("\n".join(lines) + "\n")
    done = runner.invoke(bitlatent_cli, ["evaluate", "--format", "csv", "--path", "ext/captions.csv",
                                         "--steps", "10", "-o", "ext.json"])
    assert done.exit_code == 0, done.output
    external = json.loads(Path("ext.json").read_text())
    assert external["dataset"]["input_rows"] == 6 and external["reconstruction"]["test"]["images"] == 6
    assert set(external["alignment"]) >= {"t2i_recall@1", "t2i_recall@10", "bit_accuracy"}
