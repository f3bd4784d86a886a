"""What a decoder lets text-to-image reach: the synthetic attribute checker on reconstructions.

    python benchmarks/decoder_ceiling.py                     # the five decoders of benchmarks/README.md
    python benchmarks/decoder_ceiling.py --only s64_16x16x8 --train 1000 --heldout 200

An image generated from a caption can be no better than the decoder's rendering of the caption's
own image. For each decoder (``DECODERS``): pretrain it jointly with the latents of ``--train``
synthetic images, fit latents for ``--heldout`` other images with the decoder frozen, and score the
decoded images with ``bitlatent.data.shape_checker`` (accuracy and per attribute: shape, colour,
size, position), beside held-out PSNR and the training time. Writes ``results/decoder_ceiling.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result  # noqa: E402

# name -> (image size, DecoderConfig fields, TrainConfig fields besides the shared ones)
DECODERS: dict[str, tuple[int, dict, dict]] = {
    "s32_8x8x8": (32, dict(latent_h=8, latent_w=8, bits_per_cell=8, widths=(48, 32, 32)), {}),  # conf/base
    "s32_8x8x16": (32, dict(latent_h=8, latent_w=8, bits_per_cell=16, widths=(48, 32, 32)), {}),
    "s32_8x8x8_wide": (32, dict(latent_h=8, latent_w=8, bits_per_cell=8, widths=(96, 64, 32)), {"epochs": 80}),
    "s64_16x16x8": (64, dict(latent_h=16, latent_w=16, bits_per_cell=8, widths=(128, 64, 32)),  # conf/synthetic64
                    {"cpu_bf16": True}),
    "s64_8x8x16": (64, dict(latent_h=8, latent_w=8, bits_per_cell=16, widths=(128, 64, 32, 32),
                            blocks_per_stage=(2, 1, 1, 1)), {"cpu_bf16": True}),
}


def render(size: int, count: int) -> tuple[np.ndarray, list]:
    """The first ``count`` synthetic scenes at ``size``: uint8 (N, size, size, 3) and their attributes."""
    from bitlatent.data.synthetic import SyntheticConfig, render_sample

    config = SyntheticConfig(num_pairs=count, image_size=size)
    samples = [render_sample(i, config) for i in range(count)]
    return np.stack([s[0] for s in samples]), [s[2] for s in samples]


def measure(name: str, images: np.ndarray, attributes: list, train: int, heldout: int, epochs: int) -> dict:
    from bitlatent.core.decoder import DecoderConfig
    from bitlatent.core.train import TrainConfig, decode_packed, fit_latents, pretrain
    from bitlatent.data.shape_checker import attribute_breakdown

    size, decoder_fields, train_fields = DECODERS[name]
    decoder_config = DecoderConfig(image_size=size, **decoder_fields)
    config = TrainConfig(**{"epochs": epochs, "batch_size": 32, "latent_lr": 0.2,
                            "fit_steps": 100, "progress": False, **train_fields})
    started = time.perf_counter()
    result = pretrain(images, decoder_config, config, indices=np.arange(train))
    pretrain_s = time.perf_counter() - started
    held = np.arange(train, train + heldout)
    started = time.perf_counter()
    fitted = fit_latents(result.decoder, images, config, indices=held)
    fit_s = time.perf_counter() - started
    decoded = decode_packed(result.decoder, fitted.packed)
    jointly_trained = decode_packed(result.decoder, result.latents.packed()[:heldout])
    mse = float(((decoded.astype(np.float32) - images[held].astype(np.float32)) ** 2).mean())
    return {
        "image_size": size,
        "bits_per_image": decoder_config.latent_spec().bits_per_image,
        "decoder": {k: list(v) if isinstance(v, tuple) else v for k, v in decoder_fields.items()},
        "epochs": config.epochs,
        "decoder_parameters": sum(p.numel() for p in result.decoder.parameters()),
        "heldout_psnr": round(10 * np.log10(255.0**2 / mse), 2),
        "heldout_attributes": {k: round(v, 3) for k, v in attribute_breakdown(decoded, [attributes[i] for i in held]).items()},
        "pretrain_attributes": {k: round(v, 3) for k, v in attribute_breakdown(jointly_trained, attributes[:heldout]).items()},
        "pretrain_seconds": round(pretrain_s, 1),
        "fit_seconds_per_image": round(fit_s / heldout, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=sorted(DECODERS), help="Decoders to measure (repeatable).")
    parser.add_argument("--train", type=int, default=1000, help="Synthetic images the decoder pretrains on.")
    parser.add_argument("--heldout", type=int, default=200, help="Other images, fitted with the decoder frozen.")
    parser.add_argument("--epochs", type=int, default=40, help="Pretraining epochs (a decoder's own setting wins).")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.train < 1 or args.heldout < 1:
        raise SystemExit("--train and --heldout must be positive")
    torch.set_num_threads(args.threads)
    names = args.only or list(DECODERS)
    rendered: dict[int, tuple[np.ndarray, list]] = {}
    results = {}
    for name in names:
        size = DECODERS[name][0]
        if size not in rendered:
            rendered[size] = render(size, args.train + args.heldout)
        results[name] = measure(name, *rendered[size], args.train, args.heldout, args.epochs)
        print(name, results[name], flush=True)
    path = write_result("decoder_ceiling", {"machine": machine(), "train_images": args.train,
                                            "heldout_images": args.heldout, "decoders": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
