"""Rate–distortion on held-out 64x64 images: bitlatent at 1,024 / 2,048 / 4,096 bits per image
against JPEG and WebP (Pillow, whole files counted) on the same images.

    python benchmarks/rate_distortion.py                 # Flickr8k if present, else synthetic; 20 epochs
    python benchmarks/rate_distortion.py --epochs 2 --train 256 --test 64   # a smoke run
    python benchmarks/rate_distortion.py --bf16 --threads 2 --train 1000 --epochs 200   # the README's run (CPU with AMX)
    python benchmarks/rate_distortion.py --device cuda   # on a GPU (..._cuda.json / .png; PSNR need not match the CPU's)

For each bit budget a decoder with a 16x16 latent grid and C = bits / 256 bits per cell is
pretrained for ``--epochs`` epochs (a fixed amount of optimisation, so the curve does not depend
on how busy the machine is; the seconds it took are recorded), then latents of the held-out
images are fitted with it frozen (``fit_latents``, ``--fit-steps``). PSNR over the set (from the
mean MSE), as the quality targets define it (docs/architecture.md). Slow: not part of
``run_all.py --quick``. Writes ``results/rate_distortion.json`` (after every bit budget, so a
killed run keeps the finished points) and ``results/rate_distortion.png``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, add_device_argument, check_device, machine, result_name, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[1024, 2048, 4096])
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=20, help="Pretraining epochs per bit budget.")
    parser.add_argument("--fit-steps", type=int, default=100)
    flickr = flickr8k_fit_settings()
    parser.add_argument("--latent-lr", type=float, default=flickr["latent_lr"],
                        help="Pretraining latent learning rate (default: conf/flickr8k's; 0.5 lost 0.2 dB over 72 epochs).")
    parser.add_argument("--fit-lr", type=float, default=flickr["fit_lr"], help="Fitting learning rate (default: conf/flickr8k's).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast on the CPU (TrainConfig.cpu_bf16: ~2.6x faster steps with AMX, same PSNR).")
    add_device_argument(parser)
    args = parser.parse_args()
    check_device(args.device)
    torch.set_num_threads(args.threads)

    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig
    from bitlatent.core.train import TrainConfig, fit_latents, pretrain
    from bitlatent.evaluation.codecs import psnr_at_bits, quality_sweep
    from vae_comparison import flickr_images, synthetic_images

    images = flickr_images(args.train + args.test)
    data = "flickr8k 64x64 (centre crop)"
    if images is None:
        images, data = synthetic_images(args.train + args.test, size=64), "synthetic shapes 64x64"
    train, test = images[: args.train], images[args.train :]
    base = dict(progress=False, channels_last=args.bf16, cpu_bf16=args.bf16, seed=0, batch_size=32, warmup_steps=50,
                device=args.device)

    codecs = {c: quality_sweep(test, c) for c in ("jpeg", "webp")}
    at = {c: {b: psnr_at_bits(curve, b) for b in args.bits} for c, curve in codecs.items()}
    print(at, flush=True)

    ours = []
    for bits in args.bits:
        cfg = DecoderConfig(image_size=64, latent_h=16, latent_w=16, bits_per_cell=bits // 256)
        torch.manual_seed(0)
        t0 = time.perf_counter()
        decoder = pretrain(train, BinaryLatentDecoder(cfg), TrainConfig(**base, epochs=args.epochs, latent_lr=args.latent_lr)).decoder
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        fit = fit_latents(decoder, test, TrainConfig(**base, fit_steps=args.fit_steps, fit_lr=args.fit_lr,
                                                      fit_betas=flickr["fit_betas"], fit_batch_size=256))
        ours.append({"bits_per_image": bits, "psnr": fit.psnr, "psnr_mean_per_image": fit.psnr_mean_per_image,
                     "epochs": args.epochs, "pretrain_seconds": seconds, "fit_seconds": time.perf_counter() - t0,
                     "decoder_parameters": decoder.num_parameters(),
                     **{f"{c}_psnr_at_same_bits": at[c][bits] for c in codecs}})
        print(ours[-1], flush=True)
        plot(ours, codecs, args.bits, data, result_name("rate_distortion", args.device))
        payload = {"machine": machine(), "device": args.device, "data": data, "n_train": len(train), "n_test": len(test),
                   "epochs": args.epochs, "fit_steps": args.fit_steps, "threads": args.threads, "bf16": args.bf16,
                   "latent_lr": args.latent_lr, "fit_lr": args.fit_lr, "fit_betas": flickr["fit_betas"],
                   "ours": ours, "codec_psnr_at_bits": at, "codec_curves": codecs}
        print(f"wrote {write_result(result_name('rate_distortion', args.device), payload)}", flush=True)


def flickr8k_fit_settings() -> dict[str, Any]:
    """The latent and fitting learning rates (and fitting betas) of ``conf/flickr8k``, so the curve trains as that
    environment does."""
    import yaml

    params = yaml.safe_load((Path(__file__).parents[1] / "conf" / "flickr8k" / "parameters.yml").read_text())
    return {"latent_lr": params["pretraining"]["train"]["latent_lr"],
            "fit_lr": params["latent_adaptation"]["train"]["fit_lr"],
            "fit_betas": tuple(params["latent_adaptation"]["train"]["fit_betas"])}


def plot(ours: list[dict], codecs: dict, bits: list[int], data: str, name: str = "rate_distortion") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ours = sorted(ours, key=lambda o: o["bits_per_image"])
    ax.plot([o["bits_per_image"] for o in ours], [o["psnr"] for o in ours], "o-", label="bitlatent (fitted latents)")
    for c, curve in codecs.items():
        pts = sorted((p["bits_per_image"], p["psnr"]) for p in curve if p["bits_per_image"] <= 4 * max(bits))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".--", label=c.upper())
    ax.set_xscale("log", base=2)
    ax.set_xlabel("bits per 64x64 image")
    ax.set_ylabel("PSNR over the set (dB)")
    ax.set_title(f"rate–distortion, held-out {data}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{name}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
