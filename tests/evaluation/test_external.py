"""The external evaluation as a library call, and the layering it keeps."""

import ast
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, choose_fit
from bitlatent.evaluation.external import NothingToEvaluate, evaluate_external

SRC = Path(__file__).resolve().parents[2] / "src" / "bitlatent"


def test_library_modules_never_import_the_pipelines():
    """Nodes are thin wrappers over the library; the library never reaches back into them."""
    offenders = []
    for path in SRC.rglob("*.py"):
        relative = path.relative_to(SRC)
        if relative.parts[0] == "pipelines" or relative.name == "pipeline_registry.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{relative}: {n}" for n in names if n.startswith("bitlatent.pipelines")]
    assert not offenders


def _decoder() -> BinaryLatentDecoder:
    return BinaryLatentDecoder(DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4,
                                             widths=(16, 8, 8), blocks_per_stage=(1, 1, 1)))


def test_metrics_carry_every_rejected_row(tmp_path: Path):
    (tmp_path / "images").mkdir()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "images" / "a.png")
    (tmp_path / "c.jsonl").write_bytes(b'{"image": "images/a.png", "caption": "a photo"}\n{"image": "b.png"}\nnot json\n')
    decoder = _decoder()
    metrics = evaluate_external("jsonl", str(tmp_path / "c.jsonl"), decoder, None,
                                fit=choose_fit(decoder, given_by="test", steps=1))
    dataset = metrics["dataset"]
    assert (dataset["input_rows"], dataset["accepted_rows"]) == (3, 1)
    assert [(r["ordinal"], r["reasons"]) for r in dataset["rejected"]] == [
        (1, "missing_caption;missing_file"), (2, "missing_caption;malformed_row")]
    assert metrics["reconstruction"]["test"]["images"] == 1
    # the pipeline's names: the test split's reconstruction beside JPEG/WebP at the same bits
    assert set(metrics["reconstruction"]["test"]) == {"psnr", "psnr_mean_per_image", "ssim", "images"}
    rd = metrics["rate_distortion"]
    assert rd["bitlatent_test_psnr"] == metrics["reconstruction"]["test"]["psnr"] and rd["codec_images"] == 1
    assert {"jpeg_psnr_at_same_bits", "webp_min_bits_per_image", "curves"} <= set(rd)
    # which fitting settings were used, and where each came from
    assert metrics["fit_recipe"]["values"]["steps"] == 1 and metrics["fit_recipe"]["sources"]["steps"] == "test"
    assert metrics["fit_recipe"]["sources"]["lr"] == "base" and "without a fitting recipe" in metrics["fit_recipe"]["note"]


def test_a_set_with_nothing_accepted_says_what_was_rejected(tmp_path: Path):
    (tmp_path / "c.csv").write_text("image,caption\nnope.png,a photo\n")
    with pytest.raises(NothingToEvaluate, match="no valid image") as raised:
        evaluate_external("csv", str(tmp_path / "c.csv"), _decoder(), None)
    assert raised.value.dataset["rejected"][0]["reasons"] == "missing_file"
