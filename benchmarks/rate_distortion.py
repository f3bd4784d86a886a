r"""Rate–distortion on held-out 64x64 images with entropy-coded bits: bitlatent's latents range coded
(``bitlatent.codec``) at several bit budgets and rate weights, against raw bits, JPEG and WebP (Pillow,
whole files counted) on the same images, and the published anchors on CIFAR-10 as reference markers.

    python benchmarks/rate_distortion.py --bf16   # the README's run (CPU with AMX); Flickr8k if present, else synthetic
    python benchmarks/rate_distortion.py --epochs 2 --train 64 --test 32 --fit-steps 5 --entropy-train 20 \
        --entropy-steps 5 --bits 2048 --lambdas 0 0.01 --cache /tmp/rd_smoke   # a smoke run
    python benchmarks/rate_distortion.py --device cuda   # on a GPU (..._cuda.json / .png; PSNR need not match the CPU's)

For each bit budget a decoder with a 16x16 latent grid and C = bits / 256 bits per cell is pretrained
on the training images for ``--epochs`` epochs (a fixed amount of optimisation, so the curve does not
depend on how busy the machine is; the seconds it took are recorded). Then, per rate weight
lambda (``TrainConfig.rate_weight``: the price, in MSE, of moving a latent's bits off the shared
starting pattern), the training and the held-out images' latents are fitted with the decoder frozen
(``fit_latents``; lambda 0 takes the training latents from pretraining), an unconditional entropy
model (``codec.entropy_train``, its caption replaced by a constant) is trained on the latents of the
first ``--entropy-train`` training images, and the held-out latents are compressed and decompressed with the real coder
(``codec.measure.stream_cost``: checked bit-exact, timed). A point records whole streams (header
included) per image and per pixel, PSNR over the set (from the mean MSE, as the quality targets
define it: docs/architecture.md) and the fraction of bits on the starting pattern.

Slow: not part of ``run_all.py --quick``. Writes ``results/rate_distortion.json`` after every point (a
killed run keeps the finished ones; a rerun with the same settings skips them) and
``results/rate_distortion.png``. Pretrained decoders are cached in ``--cache`` so a rerun resumes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, add_device_argument, check_device, machine, result_name, write_result  # noqa: E402

PIXELS = 64 * 64
# Published entropy-coded points on CIFAR-10 32x32 (another dataset: reference markers, not a comparison
# on the same images): COIN++ (Dupont et al. 2022, its repository's results files), Balle et al. 2018
# (scale hyperprior) and Cheng et al. 2020, read off at about 0.5 bpp.
ANCHORS = [
    {"name": "COIN++", "bpp": 0.548, "psnr": 24.22},
    {"name": "Ballé 2018 hyperprior", "bpp": 0.5, "psnr": 24.0},
    {"name": "Cheng 2020", "bpp": 0.5, "psnr": 23.9},
]
# The entropy model: small, unconditional (every caption is one constant token, and most rows read the
# "no caption" token, which is how the benchmark codes).
ENTROPY_MODEL = dict(text_dim=8, width=64, heads=4, layers=2, mlp_ratio=2, dropout=0.1, caption_dropout=0.9)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bits", type=int, nargs="+", default=[2048, 4096], help="Raw bits per image (16x16 grid).")
    parser.add_argument("--lambdas", type=float, nargs="+", default=[0.0, 0.01, 0.03],
                        help="Rate weights (TrainConfig.rate_weight) in fitting, one point each.")
    parser.add_argument("--train", type=int, default=500, help="Training images (pretraining and entropy model).")
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=130, help="Pretraining epochs per bit budget.")
    parser.add_argument("--fit-steps", type=int, default=100)
    parser.add_argument("--entropy-train", type=int, default=250,
                        help="Training images whose latents train the entropy model (fitted per lambda).")
    parser.add_argument("--entropy-steps", type=int, default=300, help="Entropy model training steps.")
    parser.add_argument("--stages", type=int, default=8, help="Coding stages (model calls per batch).")
    flickr = flickr8k_fit_settings()
    parser.add_argument("--latent-lr", type=float, default=flickr["latent_lr"],
                        help="Pretraining latent learning rate (default: conf/flickr8k's).")
    parser.add_argument("--fit-lr", type=float, default=flickr["fit_lr"], help="Fitting learning rate (default: conf/flickr8k's).")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true",
                        help="bf16 autocast on the CPU (TrainConfig.cpu_bf16: ~2.6x faster steps with AMX, same PSNR).")
    parser.add_argument("--deadline", default=None, help="UTC HH:MM after which no new point is started.")
    parser.add_argument("--cache", default="/tmp/bitlatent_rate_distortion", help="Folder of pretrained decoders.")
    add_device_argument(parser)
    args = parser.parse_args()
    check_device(args.device)
    torch.set_num_threads(args.threads)

    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, load_decoder, save_decoder
    from bitlatent.core.train import TrainConfig, pretrain
    from bitlatent.evaluation.codecs import psnr_at_bits, quality_sweep
    from vae_comparison import flickr_images, synthetic_images

    images = flickr_images(args.train + args.test)
    data = "flickr8k 64x64 (centre crop)"
    if images is None:
        images, data = synthetic_images(args.train + args.test, size=64), "synthetic shapes 64x64"
    train, test = images[: args.train], images[args.train :]
    base = dict(progress=False, channels_last=args.bf16, cpu_bf16=args.bf16, seed=0, batch_size=32, warmup_steps=50,
                device=args.device)
    name = result_name("rate_distortion", args.device)
    settings = {"data": data, "n_train": len(train), "n_test": len(test), "epochs": args.epochs,
                "fit_steps": args.fit_steps, "entropy_train": args.entropy_train, "entropy_steps": args.entropy_steps, "stages": args.stages,
                "bf16": args.bf16, "latent_lr": args.latent_lr, "fit_lr": args.fit_lr,
                "fit_betas": list(flickr["fit_betas"]), "entropy_model": ENTROPY_MODEL}
    previous = RESULTS / f"{name}.json"
    points: list[dict] = []
    if previous.exists():  # keep the finished points of a run with the same settings
        old = json.loads(previous.read_text())
        if old.get("settings") == settings:
            points = old.get("points", [])

    codecs = {c: quality_sweep(test, c) for c in ("jpeg", "webp")}
    at = {c: {b: psnr_at_bits(curve, b) for b in args.bits} for c, curve in codecs.items()}
    print(at, flush=True)
    pretrained: dict[int, dict] = {}

    def save() -> None:
        plot(points, codecs, data, name)
        payload = {"machine": machine(), "device": args.device, "threads": args.threads, "settings": settings,
                   "pretraining": pretrained, "points": points, "anchors": ANCHORS,
                   "codec_psnr_at_raw_bits": at, "codec_curves": codecs}
        print(f"wrote {write_result(name, payload)}", flush=True)

    def folder_of(bits: int) -> Path:
        return Path(args.cache) / f"bits{bits}_e{args.epochs}_n{len(train)}_{'bf16' if args.bf16 else 'fp32'}"

    for bits in args.bits:  # every decoder first: a cached one is read back
        folder = folder_of(bits)
        if not (folder / "done.json").exists():
            cfg = DecoderConfig(image_size=64, latent_h=16, latent_w=16, bits_per_cell=bits // 256)
            torch.manual_seed(0)
            t0 = time.perf_counter()
            result = pretrain(train, BinaryLatentDecoder(cfg), TrainConfig(**base, epochs=args.epochs, latent_lr=args.latent_lr))
            info = {"epochs": args.epochs, "pretrain_seconds": time.perf_counter() - t0,
                    "decoder_parameters": result.decoder.num_parameters(), "finished": machine()["date"]}
            save_decoder(result.decoder, folder)
            np.save(folder / "train_packed.npy", result.latents.packed()[np.argsort(result.indices)])
            (folder / "done.json").write_text(json.dumps(info))
        pretrained[bits] = json.loads((folder / "done.json").read_text())
        print(bits, pretrained[bits], flush=True)

    # the order spreads the curve early, so a run cut short still spans the rates
    for bits, lam in [(b, lam) for lam in args.lambdas for b in args.bits]:
        if any(p["raw_bits_per_image"] == bits and p["rate_weight"] == lam for p in points):
            continue
        if args.deadline and dt.datetime.now(dt.timezone.utc).strftime("%H:%M") >= args.deadline:
            print(f"deadline {args.deadline} UTC passed: skipping {bits} bits, lambda {lam}", flush=True)
            continue
        folder = folder_of(bits)
        decoder = load_decoder(folder)
        point = coded_point(decoder, train, test, np.load(folder / "train_packed.npy"), lam, args, base, flickr)
        point.update(raw_bits_per_image=bits, raw_bits_per_pixel=bits / PIXELS,
                     **{f"{c}_psnr_at_same_bits": psnr_at_bits(curve, point["bits_per_image"])
                        for c, curve in codecs.items()})
        points.append(point)
        print(point, flush=True)
        save()
    save()


def coded_point(decoder, train: np.ndarray, test: np.ndarray, train_packed: np.ndarray, lam: float, args,
                base: dict, flickr: dict) -> dict[str, Any]:
    """One point of the curve: fit with rate weight ``lam``, train the entropy model, code the test latents."""
    from bitlatent.codec.entropy_model import EntropyModelConfig, model_id, torch_logits, weights_bytes
    from bitlatent.codec.entropy_train import EntropyTrainConfig, train_entropy_model
    from bitlatent.codec.measure import stream_cost
    from bitlatent.core.binary import unpack_bits
    from bitlatent.core.latents import LatentTable
    from bitlatent.core.train import TrainConfig, fit_latents
    from bitlatent.text.encoder import TextFeatures
    from bitlatent.text.train import AlignmentData

    spec = decoder.latent_spec
    fit_cfg = TrainConfig(**base, fit_steps=args.fit_steps, fit_lr=args.fit_lr, fit_betas=flickr["fit_betas"],
                          fit_batch_size=256, rate_weight=lam)
    t0 = time.perf_counter()
    fit = fit_latents(decoder, test, fit_cfg)
    test_bits = unpack_bits(fit.packed[np.argsort(fit.indices)], spec)  # (n, C, h, w)
    train = train[: args.entropy_train]
    if lam:
        fitted = fit_latents(decoder, train, fit_cfg)
        train_bits = unpack_bits(fitted.packed[np.argsort(fitted.indices)], spec)
    else:  # bits are free: the pretraining latents are what fitting at lambda 0 aims for
        train_bits = unpack_bits(train_packed[: len(train)], spec)
    fit_seconds = time.perf_counter() - t0
    # the starting pattern's bits, which the rate term pulls toward (the fitting table's seed)
    reference = (LatentTable(1, spec, seed=fit_cfg.seed + 1).reference > 0).numpy().astype(np.uint8)  # (1, C, h, w)

    n = len(train_bits)
    features = TextFeatures(np.ones((n, ENTROPY_MODEL["text_dim"]), np.float16), np.arange(n + 1),
                            np.zeros((n, ENTROPY_MODEL["text_dim"]), np.float16))  # one constant token a row
    model_config = EntropyModelConfig(latent_h=spec.h, latent_w=spec.w, bits_per_cell=spec.bits_per_cell,
                                      **ENTROPY_MODEL)
    t0 = time.perf_counter()
    model = train_entropy_model(AlignmentData(features, train_bits, np.arange(n)), model_config,
                                EntropyTrainConfig(steps=args.entropy_steps, batch_size=64, lr=1e-3,
                                                   warmup_steps=50, progress=False)).model
    entropy_seconds = time.perf_counter() - t0
    cost = stream_cost(test_bits, torch_logits(model), args.stages, model_id(weights_bytes(model)))
    return {"rate_weight": lam, "bits_per_image": cost.bits_per_image, "bits_per_pixel": cost.bits_per_image / PIXELS,
            "payload_bits_per_image": cost.payload_bits_per_image, "psnr": fit.psnr,
            "psnr_mean_per_image": fit.psnr_mean_per_image,
            "on_pattern_fraction": float((test_bits == reference).mean()),
            "train_on_pattern_fraction": float((train_bits == reference).mean()),
            "compress_ms_per_image": cost.compress_ms_per_image, "decompress_ms_per_image": cost.decompress_ms_per_image,
            "fit_seconds": fit_seconds, "entropy_train_seconds": entropy_seconds,
            "finished": machine()["date"]}


def flickr8k_fit_settings() -> dict[str, Any]:
    """The latent and fitting learning rates (and fitting betas) of ``conf/flickr8k``, so the curve trains as that
    environment does."""
    import yaml

    params = yaml.safe_load((Path(__file__).parents[1] / "conf" / "flickr8k" / "parameters.yml").read_text())
    return {"latent_lr": params["pretraining"]["train"]["latent_lr"],
            "fit_lr": params["latent_adaptation"]["train"]["fit_lr"],
            "fit_betas": tuple(params["latent_adaptation"]["train"]["fit_betas"])}


def plot(points: list[dict], codecs: dict, data: str, name: str = "rate_distortion") -> None:
    """PSNR against bits per pixel: entropy-coded points per bit budget, raw-bit points, JPEG, WebP, anchors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for bits in sorted({p["raw_bits_per_image"] for p in points}):
        pts = sorted((p["bits_per_pixel"], p["psnr"], p["rate_weight"]) for p in points if p["raw_bits_per_image"] == bits)
        line, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-",
                        label=f"bitlatent {bits} bits, entropy-coded (λ = {', '.join(f'{p[2]:g}' for p in pts)})")
        raw = [p for p in points if p["raw_bits_per_image"] == bits and p["rate_weight"] == 0]
        if raw:
            ax.plot([bits / PIXELS], [raw[0]["psnr"]], "s", mfc="none", color=line.get_color(),
                    label=f"bitlatent {bits} bits, raw")
    for c, curve in codecs.items():
        pts = sorted((p["bits_per_image"] / PIXELS, p["psnr"]) for p in curve if p["bits_per_image"] <= 1.5 * PIXELS)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], ".--", label=c.upper())
    for anchor, marker in zip(ANCHORS, "*Pv"):
        ax.plot([anchor["bpp"]], [anchor["psnr"]], marker, color="grey", ms=8,
                label=f"{anchor['name']} (CIFAR-10 32x32, another dataset)")
    ax.axhline(25.0, color="grey", lw=0.6, ls=":")
    ax.axvline(0.5, color="grey", lw=0.6, ls=":")
    ax.set_xlim(0, 1.5)
    ax.set_xlabel("bits per pixel (whole streams / files)")
    ax.set_ylabel("PSNR over the set (dB)")
    ax.set_title(f"rate–distortion, held-out {data}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6.5, loc="lower right")
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{name}.png", dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
