"""What a decoder lets text-to-image reach: the synthetic attribute checker on reconstructions.

    python benchmarks/decoder_ceiling.py --threads 1         # every decoder of benchmarks/README.md
    python benchmarks/decoder_ceiling.py --only s32_16x16x4 --train 1000 --heldout 200
    python benchmarks/decoder_ceiling.py --threads 1 --only s32_16x16x8 --pipeline-splits 2000   # `make run`'s images

An image generated from a caption can be no better than the decoder's rendering of the caption's
own image. For each decoder (``DECODERS``): pretrain it jointly with the latents of ``--train``
synthetic images, fit latents for ``--heldout`` other images with the decoder frozen, and score the
decoded images with ``bitlatent.data.shape_checker`` (accuracy and per attribute: shape, colour,
size, position), beside held-out PSNR and the training time. The checker's score on the held-out
images themselves, at each image size, is the ceiling of the ceiling. Writes
``results/decoder_ceiling.json``. With ``--pipeline-splits PAIRS`` the images are those `make run`
uses instead: the pretrain split, and the test split, which also holds every scene with a
colour-shape pair pretraining never sees (``results/decoder_ceiling_pipeline_<splits>.json``).

Pretraining uses conf/base's recipe (batch 32, latent lr 0.2, the rest TrainConfig's defaults, which
conf/base repeats); fitting uses TrainConfig's defaults, which are conf/base's latent_adaptation.train
(100 steps, chunks of 256, lr 1.0, betas (0.5, 0.9), init std 0.01); a decoder's own fields win.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, machine, write_result  # noqa: E402

from bitlatent.data.shape_checker import attribute_breakdown  # noqa: E402

CONF_BASE = Path(__file__).resolve().parents[1] / "conf" / "base"

# name -> (image size, DecoderConfig fields, TrainConfig fields besides the shared ones)
BF16 = {"cpu_bf16": True}  # bf16 autocast: fast only on CPUs with AMX / AVX512-BF16
GRID8 = dict(latent_h=8, latent_w=8)
GRID16 = dict(latent_h=16, latent_w=16)
S32_16 = dict(GRID16, widths=(64, 32), blocks_per_stage=(2, 1))  # 32 x 32 from 16 x 16 cells: two pixels a cell
S64_16 = dict(GRID16, widths=(128, 64, 32))
DECODERS: dict[str, tuple[int, dict, dict]] = {
    "s32_8x8x8": (32, dict(GRID8, bits_per_cell=8, widths=(48, 32, 32)), {}),
    "s32_8x8x16": (32, dict(GRID8, bits_per_cell=16, widths=(48, 32, 32)), {}),
    "s32_8x8x8_wide": (32, dict(GRID8, bits_per_cell=8, widths=(96, 64, 32)), {"epochs": 80}),
    "s32_16x16x4": (32, dict(S32_16, bits_per_cell=4), {}),
    "s32_16x16x4_bf16": (32, dict(S32_16, bits_per_cell=4), BF16),
    "s32_16x16x8": (32, dict(S32_16, bits_per_cell=8), {}),  # conf/base
    "s32_16x16x8_f50": (32, dict(S32_16, bits_per_cell=8), {"fit_steps": 50}),
    "s32_16x16x8_slim": (32, dict(S32_16, bits_per_cell=8, widths=(32, 32)), {}),
    "s64_16x16x8": (64, dict(S64_16, bits_per_cell=8), BF16),  # conf/synthetic64
    "s64_16x16x8_e20_f50": (64, dict(S64_16, bits_per_cell=8), {**BF16, "epochs": 20, "fit_steps": 50}),
    "s64_16x16x8_narrow": (64, dict(S64_16, bits_per_cell=8, widths=(64, 32, 32)), BF16),
    "s64_8x8x16": (64, dict(GRID8, bits_per_cell=16, widths=(128, 64, 32, 32), blocks_per_stage=(2, 1, 1, 1)),
                   BF16),
}


def render(size: int, count: int, fractions: dict[str, float]) -> tuple[np.ndarray, list, np.ndarray]:
    """The first ``count`` synthetic scenes at ``size``: uint8 (N, size, size, 3), their attributes,
    and (N,) the split data_validation puts each in with ``fractions`` (as ``ingest`` does: scenes
    with a held-out colour-shape pair go to test, the rest by the hash of their id)."""
    from bitlatent.data.splits import assign_split
    from bitlatent.data.synthetic import SyntheticConfig, iter_synthetic_pairs

    pairs = list(iter_synthetic_pairs(SyntheticConfig(num_pairs=count, image_size=size)))
    splits = [pair.forced_split or assign_split(pair.image_id, fractions) for pair in pairs]
    return np.stack([pair.pixels for pair in pairs]), [pair.attributes for pair in pairs], np.array(splits)


def chosen(splits: np.ndarray, train: int, heldout: int, pipeline: bool) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the images pretrained on and of the held-out images fitted: the first ``train``
    scenes and the next ``heldout``; with ``pipeline``, the pretrain and test splits themselves."""
    if pipeline:
        return np.flatnonzero(splits == "pretrain"), np.flatnonzero(splits == "test")
    return np.arange(train), np.arange(train, train + heldout)


def _rounded(scores: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 3) for k, v in scores.items()}


def measure(name: str, images: np.ndarray, attributes: list, train: np.ndarray, held: np.ndarray, epochs: int) -> dict:
    """Pretrain ``name`` on images[train] (N,), fit images[held] (M,) with it frozen, and score both."""
    from bitlatent.core.decoder import DecoderConfig
    from bitlatent.core.train import TrainConfig, decode_packed, fit_latents, pretrain
    size, decoder_fields, train_fields = DECODERS[name]
    decoder_config = DecoderConfig(image_size=size, **decoder_fields)
    config = TrainConfig(**{"epochs": epochs, "batch_size": 32, "latent_lr": 0.2,
                            "fit_steps": 100, "progress": False, **train_fields})
    started = time.perf_counter()
    result = pretrain(images, decoder_config, config, indices=train)
    pretrain_s = time.perf_counter() - started
    started = time.perf_counter()
    fitted = fit_latents(result.decoder, images, config, indices=held)
    fit_s = time.perf_counter() - started
    decoded = decode_packed(result.decoder, fitted.packed)
    jointly_trained = decode_packed(result.decoder, result.latents.packed()[:len(held)])  # images[train[:M]]
    mse = float(((decoded.astype(np.float32) - images[held].astype(np.float32)) ** 2).mean())
    return {
        "image_size": size,
        "bits_per_image": decoder_config.latent_spec().bits_per_image,
        "decoder": {k: list(v) if isinstance(v, tuple) else v for k, v in decoder_fields.items()},
        "epochs": config.epochs,
        "fit_steps": config.fit_steps,
        "cpu_bf16": config.cpu_bf16,
        "decoder_parameters": sum(p.numel() for p in result.decoder.parameters()),
        "heldout_psnr": round(10 * np.log10(255.0**2 / mse), 2),
        "heldout_attributes": _rounded(attribute_breakdown(decoded, [attributes[i] for i in held])),
        "pretrain_attributes": _rounded(attribute_breakdown(jointly_trained, [attributes[i] for i in train[:len(held)]])),
        "pretrain_seconds": round(pretrain_s, 1),
        "fit_seconds_per_image": round(fit_s / len(held), 3),
        "measured": machine()["date"],
    }


def kept_from(path: Path, run: dict) -> dict:
    """``run`` with the decoders of the result at ``path`` that ``run`` did not measure, when that
    result used the same images and threads (else ``run`` alone): ``--only`` adds rows to a table."""
    if not path.exists():
        return run
    previous = json.loads(path.read_text())
    if any(previous.get(key) != run[key] for key in ("threads", "train_images", "heldout_images", "splits")):
        return run
    return {**run, "heldout_originals": {**previous["heldout_originals"], **run["heldout_originals"]},
            "decoders": {**previous["decoders"], **run["decoders"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(DECODERS), help="Decoders to measure (repeatable).")
    parser.add_argument("--train", type=int, default=1000, help="Synthetic images the decoder pretrains on.")
    parser.add_argument("--heldout", type=int, default=200, help="Other images, fitted with the decoder frozen.")
    parser.add_argument("--pipeline-splits", type=int, metavar="PAIRS",
                        help="Instead of --train / --heldout: pretrain on the pretrain split and fit the test split "
                             "that data_validation makes of PAIRS synthetic pairs with conf/base's data.splits "
                             "(its test split holds the colour-shape pairs pretraining never sees).")
    parser.add_argument("--fractions", type=float, nargs=3, metavar=("PRETRAIN", "ADAPT", "TEST"),
                        help="With --pipeline-splits: these split fractions instead of conf/base's.")
    parser.add_argument("--epochs", type=int, default=40, help="Pretraining epochs (a decoder's own setting wins).")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (recorded in the result).")
    parser.add_argument("--result", help="Writes results/<RESULT>.json (default: decoder_ceiling, or with "
                                          "--pipeline-splits decoder_ceiling_pipeline_<percent of each split>).")
    args = parser.parse_args()
    if args.train < 1 or args.heldout < 1 or (args.pipeline_splits is not None and args.pipeline_splits < 1):
        raise SystemExit("--train, --heldout and --pipeline-splits must be positive")
    torch.set_num_threads(args.threads)
    names = args.only or list(DECODERS)
    pipeline = args.pipeline_splits is not None
    fractions = {"pretrain": 1.0}  # sequential: splits unused
    if pipeline:
        fractions = (dict(zip(("pretrain", "adapt", "test"), args.fractions)) if args.fractions else
                     yaml.safe_load((CONF_BASE / "parameters_data_validation.yml").read_text())["data"]["splits"])
    count = args.pipeline_splits if pipeline else args.train + args.heldout
    result = args.result or ("decoder_ceiling" if not pipeline else
                             "decoder_ceiling_pipeline_" + "_".join(f"{round(100 * f)}" for f in fractions.values()))
    rendered: dict[int, tuple[np.ndarray, list, np.ndarray]] = {}
    ground_truth, results = {}, {}
    for name in names:
        size = DECODERS[name][0]
        if size not in rendered:
            rendered[size] = render(size, count, fractions)
        images, attributes, splits = rendered[size]
        train, held = chosen(splits, args.train, args.heldout, pipeline)
        if str(size) not in ground_truth:
            ground_truth[str(size)] = _rounded(attribute_breakdown(images[held], [attributes[i] for i in held]))
            print(f"{size}x{size} held-out originals", ground_truth[str(size)], flush=True)
        results[name] = measure(name, images, attributes, train, held, args.epochs)
        print(name, results[name], flush=True)
    run = {"machine": machine(), "threads": args.threads, "train_images": len(train), "heldout_images": len(held),
           "splits": {"pairs": count, **fractions} if pipeline else "sequential",
           "heldout_originals": ground_truth, "decoders": results}
    path = write_result(result, kept_from(RESULTS / f"{result}.json", run))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
