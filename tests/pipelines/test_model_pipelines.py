"""Tiny end-to-end runs of pretraining → adaptation → alignment → evaluation with the real catalog,
and the ``generate`` / ``evaluate`` commands on what they wrote. The runs are module fixtures, so
that every test runs alone (``-k``) as well as with the others."""

import json
import os
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from kedro.runner import SequentialRunner

from bitlatent.cli import main as bitlatent_cli
from bitlatent.data.latent_shards import load_latent_shard
from bitlatent.pipelines import (
    alignment, compression, data_validation, decoder_pretraining, evaluation, latent_adaptation,
)
from tests.pipelines.conftest import real_catalog
from tests.tiny_project import tiny_parameters

# Over the tiny project: long enough a pretraining and adaptation for the PSNR floor below, and
# 40 generated captions over all 240 images (no cap per split: the library holds every training latent).
LONGER = {
    "pretraining": {"train": {"epochs": 12}},
    "latent_adaptation": {"train": {"fit_steps": 30}},
    "evaluation": {"codec_images": 20, "generated_captions": 40, "max_images_per_split": 1000},
}


def tiny_params(**adaptation) -> dict:
    return tiny_parameters(LONGER, {"latent_adaptation": adaptation})


PIPELINES = {"data_validation": data_validation, "decoder_pretraining": decoder_pretraining,
             "latent_adaptation": latent_adaptation, "alignment": alignment, "compression": compression,
             "evaluation": evaluation}


def run(pipeline: str, params: dict) -> None:
    SequentialRunner().run(PIPELINES[pipeline].create_pipeline(), real_catalog(params))


@contextmanager
def working_directory(path: Path):
    cwd = Path.cwd()
    try:
        os.chdir(path)
        yield
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """data_validation + decoder_pretraining once for the module."""
    root = tmp_path_factory.mktemp("project")
    with working_directory(root):
        params = tiny_params()
        run("data_validation", params)
        run("decoder_pretraining", params)
    return root


@dataclass
class EndToEnd:
    root: Path
    first_indexes: list[dict]
    """index.json of part-0-of-2 and part-1-of-2 after each job's first run."""


@pytest.fixture(scope="module")
def end_to_end(trained: Path) -> EndToEnd:
    """On ``trained``: latent_adaptation as two jobs, job 1 run again, then alignment, compression and
    evaluation (which merges compression's stream sizes into metrics.json)."""
    with working_directory(trained):
        for part in (0, 1):
            run("latent_adaptation", tiny_params(shard=part, num_shards=2))
        first = [json.loads(p.read_text()) for p in sorted(Path("data/07_model_output/latents").glob("part-*-of-2/index.json"))]
        run("latent_adaptation", tiny_params(shard=1, num_shards=2))  # a rerun of a finished job
        run("alignment", tiny_params())
        run("compression", tiny_params())
        run("evaluation", tiny_params())
    return EndToEnd(trained, first)


def test_pretraining_writes_decoder_latents_curves_capacity(trained: Path, monkeypatch):
    monkeypatch.chdir(trained)
    assert Path("data/06_models/decoder").is_dir()
    spec = json.loads(Path("data/06_models/latent_spec.json").read_text())
    assert (spec["h"], spec["w"], spec["bits_per_cell"], spec["image_size"]) == (8, 8, 8, 32)
    shard = load_latent_shard(next(Path("data/06_models/pretrain_latents/pretrain").glob("*.npz")))
    assert shard.bits.dtype == np.uint8 and shard.bits.shape[1] == 8 * 8 * 8 // 8
    capacity = json.loads(Path("data/08_reporting/decoder_capacity.json").read_text())
    assert capacity["bits_per_image"] == 512 and capacity["decoder_bits"] > 0
    curves = json.loads(Path("data/08_reporting/pretraining_curves.json").read_text())
    assert curves[-1]["psnr"] > curves[0]["psnr"] and curves[-1]["step"] > curves[0]["step"]
    assert Path("data/08_reporting/pretraining_curves.png").stat().st_size > 1000


def test_adaptation_in_two_jobs_fits_every_shard_once(end_to_end: EndToEnd, monkeypatch):
    monkeypatch.chdir(end_to_end.root)
    parts = sorted(Path("data/07_model_output/latents").glob("part-*-of-2"))
    assert [p.name for p in parts] == ["part-0-of-2", "part-1-of-2"]
    done = end_to_end.first_indexes
    assert len(done) == 2
    units = done[0]["units"] + done[1]["units"]
    assert len(units) == len(set(units)) >= 3  # disjoint, together every adapt/test shard

    # A rerun of a finished job fits nothing: every shard is skipped.
    again = json.loads((parts[1] / "index.json").read_text())
    assert again["skipped"] == len(again["units"]) and again["images"] == 0


def test_alignment_writes_the_model_and_lowers_the_loss(end_to_end: EndToEnd, monkeypatch):
    monkeypatch.chdir(end_to_end.root)
    assert Path("data/06_models/text_to_latent/text_to_latent.safetensors").is_file()
    curves = json.loads(Path("data/08_reporting/alignment_curves.json").read_text())
    assert curves[-1]["loss"] < curves[0]["loss"]


def test_evaluation_metrics(end_to_end: EndToEnd, monkeypatch):
    monkeypatch.chdir(end_to_end.root)
    metrics = json.loads(Path("data/08_reporting/metrics.json").read_text())
    text = metrics["alignment"]
    assert 0.0 <= text["t2i_recall@1"] <= text["t2i_recall@5"] <= text["t2i_recall@10"] <= 1.0
    assert text["bit_accuracy"] > 0.5
    assert 1.0 <= text["t2i_median_rank"] <= text["test_images"]
    assert text["test_captions"] > text["test_images"]  # every wording of every test image
    generation = metrics["generation"]
    # the collapse measures: sample diversity, and the Frechet distance of every mode to the real images
    assert 0.0 < generation["latent_diversity"] <= 1.0 and 0.0 <= generation["layout_diversity"] <= 1.0
    assert set(generation["frechet_distance"]) == {"retrieve", "generate", "refine", "reconstructed"}
    assert generation["frechet_distance"]["reconstructed"] < generation["frechet_distance"]["generate"]
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
    # compression's stream sizes, merged in: the header (120 bits) on top of a payload below the raw bits
    assert 120 < metrics["capacity"]["entropy_coded_bits_per_image"] < 512 + 120 + 32
    assert metrics["capacity"]["latent_bits_total"] == 512 * 240
    # the capacity report of the full run: metrics.json's capacity, raw beside entropy-coded bits
    report = json.loads(Path("data/08_reporting/capacity.json").read_text())
    assert report == metrics["capacity"] and report["bits_per_image"] == 512
    assert report["entropy_coded_bits_per_pixel"] == report["entropy_coded_bits_per_image"] / 32 ** 2
    rd = metrics["rate_distortion"]
    assert rd["bitlatent_test_psnr"] == metrics["reconstruction"]["test"]["psnr"]
    # 512 bits per 32x32 image is below the smallest file either codec can write
    assert rd["webp_psnr_at_same_bits"] is None and rd["webp_min_bits_per_image"] > 512
    assert rd["jpeg_psnr_at_same_bits"] is None and rd["jpeg_min_bits_per_image"] > 512
    webp = json.loads(Path("data/08_reporting/rate_distortion/webp.json").read_text())
    assert {"bits_per_image", "psnr"} <= set(webp[0])
    for png in ("reconstruction_grid.png", "rate_distortion.png"):
        assert Path("data/08_reporting", png).stat().st_size > 1000


def test_generate_and_evaluate_commands(end_to_end: EndToEnd, monkeypatch):
    monkeypatch.chdir(end_to_end.root)
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

    Path("ext").mkdir(exist_ok=True)
    lines = ["image,caption"]
    from bitlatent.data.synthetic import SyntheticConfig, render_sample
    for index in range(6):
        pixels, caption, _ = render_sample(10_000 + index, SyntheticConfig(image_size=32))
        Image.fromarray(pixels).save(Path("ext", f"{index}.png"))
        lines.append(f'{index}.png,"{caption}"')
    Path("ext", "captions.csv").write_text("\n".join(lines) + "\n")
    done = runner.invoke(bitlatent_cli, ["evaluate", "--format", "csv", "--path", "ext/captions.csv",
                                         "--steps", "10", "-o", "ext.json"])
    assert done.exit_code == 0, done.output
    external = json.loads(Path("ext.json").read_text())
    assert external["dataset"]["input_rows"] == 6 and external["reconstruction"]["test"]["images"] == 6
    assert set(external["alignment"]) >= {"t2i_recall@1", "t2i_recall@10", "bit_accuracy"}
