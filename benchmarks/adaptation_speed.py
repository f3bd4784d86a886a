"""Adaptation speed: fitting latents with a frozen decoder (stage 2, also "encoding" a new image).

    python benchmarks/adaptation_speed.py                      # decoder pretrained here (300 s), 256 images
    python benchmarks/adaptation_speed.py --decoder DIR        # a trained decoder (save_decoder folder)
    python benchmarks/adaptation_speed.py --quick              # 20 s pretraining, 32 images, 60 fit steps
    python benchmarks/adaptation_speed.py --device cuda        # the GPU figures (..._cuda.json / .png)

Synthetic shapes (32x32, 8x8x8 bits) unless ``--decoder`` gives another image size, in which
case synthetic images of that size are rendered. Held-out images (indices after the training
ones) are fitted ``--repeats`` times; reports images/s of ``fit_latents`` (median), the PSNR
it converges to (keep-best hard bits), and the steps after which the chunk PSNR, with hard bits,
first comes within 0.5 dB of that converged PSNR. On the CPU it then times the same images
fitted with one recipe (``FitRecipe``: these settings, bf16 with ``--bf16``) two ways: the
pipeline's call (``fit_latents`` on memory-mapped images, as ``latent_adaptation`` does) and
``bitlatent encode`` in its own process (PNG files, the decoder saved with that recipe), with the
user and system CPU seconds of each. Writes ``results/adaptation_speed.json`` and
``results/adaptation_speed.png``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, add_device_argument, check_device, machine, result_name, write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--decoder", type=Path, default=None)
    parser.add_argument("--pretrain-seconds", type=float, default=300.0)
    parser.add_argument("--train", type=int, default=1000)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--fit-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--bf16", action="store_true", help="The recipe of the pipeline / CLI comparison fits in bf16.")
    parser.add_argument("--quick", action="store_true", help="20 s pretraining on 128 images, 32 images, 60 steps, 2 repeats.")
    add_device_argument(parser)
    args = parser.parse_args()
    check_device(args.device)
    if args.quick:
        args.pretrain_seconds, args.train, args.images, args.fit_steps, args.repeats = 20.0, 128, 32, 60, 2
    torch.set_num_threads(args.threads)

    from bitlatent.core.decoder import BinaryLatentDecoder, DecoderConfig, load_decoder
    from bitlatent.core.train import TrainConfig, fit_latents, pretrain
    from vae_comparison import synthetic_images

    base = dict(progress=False, channels_last=False, seed=0, device=args.device)  # pretrain's AMP on a GPU
    if args.decoder is not None:
        decoder = load_decoder(args.decoder, device=args.device)
        source = str(args.decoder)
        size = decoder.config.image_size
        test = synthetic_images(args.images, start=args.train, size=size)
    else:
        cfg = DecoderConfig(image_size=32, latent_h=8, latent_w=8, bits_per_cell=8)
        train = synthetic_images(args.train + args.images)
        train, test = train[: args.train], train[args.train :]
        torch.manual_seed(0)
        decoder = BinaryLatentDecoder(cfg)
        # time a few steps, then pick the epochs that fill the pretraining budget
        warm = pretrain(train[:64], BinaryLatentDecoder(cfg), TrainConfig(**base, epochs=3, batch_size=32))
        step = float(np.median(np.diff(warm.curves["wall_time"])))  # seconds per step, warm-up excluded
        epochs = max(2, round(args.pretrain_seconds / (step * -(-args.train // 32))))
        t0 = time.perf_counter()
        decoder = pretrain(train, decoder, TrainConfig(**base, epochs=epochs, batch_size=32, warmup_steps=50)).decoder
        source = f"pretrained here: {args.train} synthetic images, {epochs} epochs, {time.perf_counter() - t0:.0f} s"

    fit_cfg = TrainConfig(**base, fit_steps=args.fit_steps, fit_batch_size=args.images)
    runs = []
    for r in range(args.repeats):
        t0 = time.perf_counter()
        fit = fit_latents(decoder, test, fit_cfg)
        seconds = time.perf_counter() - t0
        c = fit.curves
        hard = [(int(s), p) for s, p, h in zip(c["step"], c["psnr"], c["hardness"]) if h >= 1.0]
        within = next((s for s, p in hard if p >= fit.psnr - 0.5), None)
        runs.append({"seconds": seconds, "images_per_second": len(test) / seconds, "psnr": fit.psnr,
                     "psnr_mean_per_image": fit.psnr_mean_per_image, "steps_to_within_0.5dB": within,
                     "curve": {"step": c["step"], "psnr": c["psnr"], "hardness": c["hardness"]}})
        print({k: v for k, v in runs[-1].items() if k != "curve"}, flush=True)

    recipe_timing = pipeline_and_cli(decoder, test, fit_cfg, args) if args.device == "cpu" else None
    summary = {
        "images_per_second_median": statistics.median(r["images_per_second"] for r in runs),
        "seconds_per_image_median": statistics.median(r["seconds"] / len(test) for r in runs),
        "converged_psnr_median": statistics.median(r["psnr"] for r in runs),
        "steps_to_within_0.5dB_median": statistics.median(r["steps_to_within_0.5dB"] or args.fit_steps for r in runs),
    }
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    c = runs[0]["curve"]
    ax.plot(c["step"], c["psnr"], label="chunk PSNR")
    ax.axhline(runs[0]["psnr"], color="k", ls=":", label="converged (keep-best hard bits)")
    ax.axhline(runs[0]["psnr"] - 0.5, color="grey", ls="--", label="-0.5 dB")
    ax.set_xlabel("fit step (full chunk)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"fit_latents with a frozen decoder: {len(test)} images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    RESULTS.mkdir(parents=True, exist_ok=True)
    fig.savefig(RESULTS / f"{result_name('adaptation_speed', args.device)}.png", dpi=110)
    plt.close(fig)
    payload = {"machine": machine(), "device": args.device, "torch_threads": torch.get_num_threads(), "quick": args.quick,
               "decoder": source, "decoder_parameters": decoder.num_parameters(),
               "bits_per_image": decoder.latent_spec.bits_per_image, "images": len(test),
               "fit_steps": args.fit_steps, "fit_config": fit_cfg.to_dict(), "summary": summary, "runs": runs,
               "pipeline_vs_cli": recipe_timing}
    print(summary)
    print(f"wrote {write_result(result_name('adaptation_speed', args.device), payload)}")


def _cpu_seconds(who: int) -> tuple[float, float]:
    usage = resource.getrusage(who)
    return usage.ru_utime, usage.ru_stime


def pipeline_and_cli(decoder, test: np.ndarray, fit_cfg, args) -> dict:
    """Seconds per image of one recipe through the pipeline's call and through ``bitlatent encode``
    (process start and PNG reading included), with user / system CPU seconds of each."""
    from PIL import Image

    from bitlatent.core.decoder import FitRecipe, attach_fit_recipe, save_decoder
    from bitlatent.core.train import fit_latents

    recipe = FitRecipe.from_dict({**FitRecipe.from_train(fit_cfg).to_dict(), "cpu_bf16": args.bf16})
    with tempfile.TemporaryDirectory(prefix="adaptation-speed-") as scratch:
        scratch = Path(scratch)
        np.save(scratch / "images.npy", test)
        images = np.load(scratch / "images.npy", mmap_mode="r")  # (n, H, W, 3), as image shards are read
        train = recipe.train_config()
        train.progress = False
        user, system = _cpu_seconds(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        fit_latents(decoder, images, train)
        seconds = time.perf_counter() - t0
        user2, system2 = _cpu_seconds(resource.RUSAGE_SELF)
        pipeline = {"seconds_per_image": seconds / len(test), "user_seconds": user2 - user,
                    "system_seconds": system2 - system}

        (scratch / "png").mkdir()
        for i, image in enumerate(test):
            Image.fromarray(image).save(scratch / "png" / f"{i:05d}.png")
        save_decoder(attach_fit_recipe(decoder, recipe), scratch / "decoder")
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}  # the threads the pipeline call had
        user, system = _cpu_seconds(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "bitlatent.cli", "encode", str(scratch / "png"), "-o",
                        str(scratch / "z.npz"), "--decoder", str(scratch / "decoder")], check=True, env=env)
        seconds = time.perf_counter() - t0
        user2, system2 = _cpu_seconds(resource.RUSAGE_CHILDREN)
        cli = {"seconds_per_image": seconds / len(test), "user_seconds": user2 - user, "system_seconds": system2 - system}
    result = {"recipe": recipe.to_dict(), "images": len(test), "threads": args.threads, "pipeline": pipeline, "cli": cli}
    print(result, flush=True)
    return result


if __name__ == "__main__":
    main()
