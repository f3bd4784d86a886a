"""Decoder-only (auto-decoder) against a binary VAE with the same latent grid, bits and decoder.

    python benchmarks/vae_comparison.py            # 2,000 train / 200 held-out, 300 s per model
    python benchmarks/vae_comparison.py --quick    # 128 / 32, 20 s per model
    python benchmarks/vae_comparison.py --device cuda   # the GPU figures (results/vae_comparison_cuda.json)

Both models run side by side in one process, on the same images, bit budget (C*h*w bits per
image) and wall-clock budget, contiguous memory format; on the CPU float32, on a GPU the step
costs in float32 and the race with pretrain's mixed precision (both models alike):

1. parameters (decoder-only: the decoder; VAE: encoder + the same decoder);
2. time per training step (batch 32): A B A B ... ``--repeats`` times after a warm-up, medians
   and the ratio VAE / decoder-only;
3. training memory of one step, counted exactly: parameters + gradients + Adam moments +
   tensors saved for backward (``saved_tensors_hooks``, unique storages) + for the decoder-only
   model its latent table (logits + Adam moments of every training image); plus the RSS growth
   of the process over the step (noisy: allocator caching), on a GPU the peak allocated memory;
4. training for the same wall-clock budget (epochs set from the measured step time; both use
   pretrain's schedule): train PSNR (batch PSNR, mean per epoch) and held-out PSNR against time,
   a plot; held-out PSNR is an encoder pass for the VAE and ``fit_latents`` with the frozen
   decoder (fewer fit steps mid-run) for the decoder-only model; evaluation time is excluded;
5. the cost of a latent for a new image: one encoder pass vs ``fit_latents`` (default 100 steps),
   seconds per image and the PSNR each reaches.

Data: synthetic shapes at 32x32 (8x8x8 = 512 bits), and Flickr8k at 64x64 (16x16x8 = 2,048 bits)
when ``../shared/datasets/flickr8k/images`` exists. Writes ``results/vae_comparison.json`` and
``results/vae_comparison_<data>.png`` (``_cuda`` in both names for the GPU figures).
"""

from __future__ import annotations

import argparse
import copy
import gc
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from common import RESULTS, add_device_argument, check_device, machine, result_name, synchronize, write_result  # noqa: E402

PROJECT = Path(__file__).resolve().parents[1]
FLICKR = PROJECT.parent / "shared" / "datasets" / "flickr8k" / "images"


# ----------------------------------------------------------------------------- data


def synthetic_images(n: int, start: int = 0, size: int = 32) -> np.ndarray:
    from bitlatent.data.synthetic import SyntheticConfig, render_sample

    cfg = SyntheticConfig(num_pairs=start + n, image_size=size)
    return np.stack([render_sample(i, cfg)[0] for i in range(start, start + n)])  # (n, H, W, 3) uint8


def flickr_images(n: int, size: int = 64) -> np.ndarray | None:
    """The first ``n`` Flickr8k photos (sorted names), centre-cropped and resized; None if absent."""
    if not FLICKR.is_dir():
        return None
    from PIL import Image

    files = sorted(FLICKR.glob("*.jpg"))[:n]
    if len(files) < n:
        return None
    out = []
    for f in files:
        with Image.open(f) as im:
            im = im.convert("RGB")
            side = min(im.size)
            left, top = (im.width - side) // 2, (im.height - side) // 2
            im = im.crop((left, top, left + side, top + side)).resize((size, size), Image.BICUBIC)
            out.append(np.asarray(im))
    return np.stack(out)


# ----------------------------------------------------------------------------- step cost


def _batch(images: np.ndarray, rows: np.ndarray, device: str = "cpu") -> torch.Tensor:
    return torch.from_numpy(images[rows]).to(device).permute(0, 3, 1, 2).float().div_(255.0)  # (B, 3, H, W)


class DecoderOnlyStep:
    """One pretraining step of the decoder-only model, as ``pretrain`` does it (hard bits)."""

    def __init__(self, decoder, images: np.ndarray, batch: int, device: str = "cpu"):
        from bitlatent.core.latents import LatentTable

        self.decoder, self.images, self.batch, self.device = decoder.to(device).train(), images, batch, device
        self.table = LatentTable(len(images), decoder.latent_spec, init_std=0.3, seed=1, betas=(0.5, 0.9), device=device)
        self.opt = torch.optim.Adam(decoder.parameters(), lr=2e-3, betas=(0.9, 0.99))
        self.g = np.random.default_rng(0)

    def __call__(self) -> None:
        from bitlatent.core.binary import binarize

        rows = self.g.choice(len(self.images), self.batch, replace=False)
        x = _batch(self.images, rows, self.device)
        rows_t = torch.from_numpy(rows).to(self.device)
        logits = self.table.gather(rows_t)  # (B, C, h, w)
        loss = F.mse_loss(self.decoder(binarize(logits, 1.0)), x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.decoder.parameters(), 1.0)
        self.opt.step()
        self.table.step(rows_t, logits.grad * len(rows), 0.05)

    def state_bytes(self) -> int:
        params = sum(p.numel() * p.element_size() for p in self.decoder.parameters())
        table = sum(t.numel() * t.element_size() for t in (self.table.logits, self.table.exp_avg, self.table.exp_avg_sq, self.table.steps))
        return 4 * params + table  # weights + grads + 2 Adam moments + latent table


class VAEStep:
    def __init__(self, model, images: np.ndarray, batch: int, device: str = "cpu"):
        self.model, self.images, self.batch, self.device = model.to(device).train(), images, batch, device
        self.opt = torch.optim.Adam(model.parameters(), lr=2e-3, betas=(0.9, 0.99))
        self.g = np.random.default_rng(0)

    def __call__(self) -> None:
        rows = self.g.choice(len(self.images), self.batch, replace=False)
        x = _batch(self.images, rows, self.device)
        loss = F.mse_loss(self.model(x, 1.0), x)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.opt.step()

    def state_bytes(self) -> int:
        return 4 * sum(p.numel() * p.element_size() for p in self.model.parameters())


def saved_bytes(step) -> int:
    """Bytes of the unique storages autograd saves for backward during one step."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor):
        try:
            s = t.untyped_storage()
            seen[s.data_ptr()] = s.nbytes()
        except Exception:  # noqa: BLE001
            pass
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        step()
    return sum(seen.values())


def rss_growth(step) -> int:
    gc.collect()
    proc = psutil.Process()
    before = proc.memory_info().rss
    step()
    return max(proc.memory_info().rss - before, 0)


def cuda_peak_bytes(step) -> int:
    """Peak GPU memory allocated during one step, above what was allocated before it."""
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    step()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - before


def step_costs(dec_cfg, enc_cfg, images: np.ndarray, repeats: int, batch: int = 32, device: str = "cpu") -> dict:
    from bitlatent.core.decoder import BinaryLatentDecoder
    from vae import BinaryVAE

    torch.manual_seed(0)
    a = DecoderOnlyStep(BinaryLatentDecoder(dec_cfg), images, batch, device)
    b = VAEStep(BinaryVAE(dec_cfg, enc_cfg), images, batch, device)
    rss = {"decoder_only": rss_growth(a), "vae": rss_growth(b)}  # first step: buffers get allocated
    for _ in range(2):
        a(), b()
    times = {"decoder_only": [], "vae": []}
    for _ in range(repeats):  # A B A B: drift on a shared machine hits both
        for name, step in (("decoder_only", a), ("vae", b)):
            synchronize(device)
            t0 = time.perf_counter()
            step()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) for k, v in times.items()}
    mem = {}
    for name, step in (("decoder_only", a), ("vae", b)):
        act = saved_bytes(step)
        mem[name] = {"state_bytes": step.state_bytes(), "saved_activation_bytes": act,
                     "total_bytes": step.state_bytes() + act, "first_step_rss_growth_bytes": rss[name]}
        if device == "cuda":
            mem[name]["cuda_step_peak_bytes"] = cuda_peak_bytes(step)
    return {
        "batch_size": batch, "repeats": repeats,
        "step_seconds_median": med, "step_seconds_all": times,
        "step_time_ratio_vae_over_decoder_only": med["vae"] / med["decoder_only"],
        "memory": mem,
        "memory_ratio_vae_over_decoder_only": mem["vae"]["total_bytes"] / mem["decoder_only"]["total_bytes"],
    }


# ----------------------------------------------------------------------------- training race


def psnr_set(mse: np.ndarray) -> float:
    from bitlatent.core.image_quality import psnr_from_mse

    return psnr_from_mse(float(np.mean(mse)))


def per_epoch(curves: dict, steps_per_epoch: int) -> list[dict]:
    from bitlatent.core.image_quality import psnr_from_mse

    out = []
    psnr = np.asarray(curves["psnr"])
    wall = np.asarray(curves["wall_time"])
    for e in range(len(psnr) // steps_per_epoch):
        sl = slice(e * steps_per_epoch, (e + 1) * steps_per_epoch)
        mse = np.mean(10 ** (-psnr[sl] / 10))
        out.append({"epoch": e + 1, "wall_time": float(wall[sl][-1]), "train_psnr": psnr_from_mse(float(mse))})
    return out


def race(name: str, dec_cfg, enc_cfg, train: np.ndarray, test: np.ndarray, budget: float,
         step_time: dict, eval_points: int, mid_fit_steps: int, fit_steps: int = 100, device: str = "cpu") -> dict:
    from bitlatent.core.decoder import BinaryLatentDecoder
    from bitlatent.core.train import TrainConfig, decode_packed, fit_latents
    from vae import BinaryVAE, encode_images, train_vae

    steps_per_epoch = -(-len(train) // 32)
    base = dict(batch_size=32, progress=False, channels_last=False, warmup_steps=50, seed=0, device=device)
    fit_cfg = TrainConfig(**{**base, "fit_batch_size": 256, "fit_steps": fit_steps})
    mid_fit_cfg = TrainConfig(**{**base, "fit_batch_size": 256, "fit_steps": mid_fit_steps})
    out = {}

    # --- decoder-only
    epochs = max(2, round(budget / (step_time["decoder_only"] * steps_per_epoch)))
    total = epochs * steps_per_epoch
    marks = {round(total * (i + 1) / eval_points) for i in range(eval_points)}
    held, eval_time = [], [0.0]
    torch.manual_seed(0)
    decoder = BinaryLatentDecoder(dec_cfg)

    def dec_callback(step: int, record: dict) -> None:
        if step in marks and step != total:
            t0 = time.perf_counter()
            fit = fit_latents(copy.deepcopy(decoder), test, mid_fit_cfg)
            held.append({"step": step, "wall_time": record["wall_time"] - eval_time[0], "heldout_psnr": fit.psnr,
                         "fit_steps": mid_fit_steps})
            eval_time[0] += time.perf_counter() - t0

    from bitlatent.core.train import pretrain

    t0 = time.perf_counter()
    result = pretrain(train, decoder, TrainConfig(**{**base, "epochs": epochs}), callback=dec_callback)
    train_wall = time.perf_counter() - t0 - eval_time[0]
    recon = decode_packed(result.decoder, result.latents.packed())
    train_mse = ((recon.astype(np.float64) - train[result.indices].astype(np.float64)) / 255) ** 2
    t0 = time.perf_counter()
    fit = fit_latents(result.decoder, test, fit_cfg)
    fit_seconds = time.perf_counter() - t0
    held.append({"step": total, "wall_time": train_wall, "heldout_psnr": fit.psnr, "fit_steps": fit_cfg.fit_steps})
    # wall times in pretrain's curves include evaluation inside the callback: remove it step by step
    wall = np.asarray(result.curves["wall_time"], dtype=float)
    cum = np.zeros_like(wall)
    done = 0.0
    mark_steps = sorted(h["step"] for h in held[:-1])
    per_eval = eval_time[0] / max(len(mark_steps), 1)
    for i, s in enumerate(result.curves["step"]):
        cum[i] = done
        if int(s) in mark_steps:
            done += per_eval
    clean = {**result.curves, "wall_time": list(wall - cum)}
    out["decoder_only"] = {
        "epochs": epochs, "steps": total, "train_seconds": train_wall,
        "train_psnr_final": psnr_set(train_mse.reshape(len(train), -1).mean(1)),
        "heldout_psnr_final": fit.psnr, "heldout_psnr_mean_per_image": fit.psnr_mean_per_image,
        "train_curve": per_epoch(clean, steps_per_epoch), "heldout_curve": held,
        "new_image_latent": {"method": f"fit_latents, {fit_cfg.fit_steps} steps, chunk {fit_cfg.fit_batch_size}",
                             "seconds_per_image": fit_seconds / len(test), "psnr": fit.psnr},
    }
    del result, decoder
    gc.collect()

    # --- VAE
    epochs = max(2, round(budget / (step_time["vae"] * steps_per_epoch)))
    total = epochs * steps_per_epoch
    marks = {round(total * (i + 1) / eval_points) for i in range(eval_points)}
    torch.manual_seed(0)
    model = BinaryVAE(dec_cfg, enc_cfg)
    held = []

    def vae_callback(step: int, record: dict) -> None:
        if step in marks and step != total:
            _, mse = encode_images(model, test)
            held.append({"step": step, "wall_time": record["wall_time"], "heldout_psnr": psnr_set(mse)})
            model.train()

    vres = train_vae(train, model, TrainConfig(**{**base, "epochs": epochs}), callback=vae_callback)
    _, train_mse = encode_images(model, train)
    synchronize(device)
    t0 = time.perf_counter()
    _, test_mse = encode_images(model, test)  # returns CPU arrays: synchronised
    enc_seconds = time.perf_counter() - t0
    held.append({"step": total, "wall_time": vres.curves["wall_time"][-1], "heldout_psnr": psnr_set(test_mse)})
    out["vae"] = {
        "epochs": epochs, "steps": total, "train_seconds": vres.curves["wall_time"][-1],
        "train_psnr_final": psnr_set(train_mse), "heldout_psnr_final": psnr_set(test_mse),
        "heldout_psnr_mean_per_image": float(np.mean(10 * np.log10(1 / np.maximum(test_mse, 1e-12)))),
        "train_curve": per_epoch(vres.curves, steps_per_epoch), "heldout_curve": held,
        "new_image_latent": {"method": "one encoder pass (batch 256, incl. decoding for the PSNR)",
                             "seconds_per_image": enc_seconds / len(test), "psnr": psnr_set(test_mse)},
    }
    out["new_image_latent_cost_ratio_fit_over_encoder"] = (
        out["decoder_only"]["new_image_latent"]["seconds_per_image"] / out["vae"]["new_image_latent"]["seconds_per_image"])
    return out


def plot(name: str, res: dict) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, colour, label in (("decoder_only", "C0", "decoder-only"), ("vae", "C3", "binary VAE")):
        r = res["race"][key]
        ax.plot([p["wall_time"] for p in r["train_curve"]], [p["train_psnr"] for p in r["train_curve"]],
                "-", color=colour, label=f"{label}: train (batch, per epoch)")
        ax.plot([p["wall_time"] for p in r["heldout_curve"]], [p["heldout_psnr"] for p in r["heldout_curve"]],
                "o--", color=colour, label=f"{label}: held-out")
    ax.set_xlabel(f"training wall time (s, {res.get('device', 'cpu').upper()})")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(f"{name}: {res['bits_per_image']} bits/image, same decoder")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result_name('vae_comparison', res.get('device', 'cpu'))}_{name}.png"
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="128/32 images, 20 s per model, 3 repeats, 30 fit steps (2 held-out points).")
    parser.add_argument("--train", type=int, default=2000)
    parser.add_argument("--test", type=int, default=200)
    parser.add_argument("--budget", type=float, default=300.0, help="Training seconds per model.")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--fit-steps", type=int, default=100, help="fit_latents steps for held-out latents.")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box).")
    parser.add_argument("--no-flickr", action="store_true")
    add_device_argument(parser)
    args = parser.parse_args()
    check_device(args.device)
    if args.quick:
        args.train, args.test, args.budget, args.repeats, args.fit_steps = 128, 32, 20.0, 3, 30
    eval_points, mid_fit = (2, 10) if args.quick else (5, 50)
    torch.set_num_threads(args.threads)

    from bitlatent.core.decoder import DecoderConfig
    from vae import BinaryVAE, EncoderConfig

    datasets = {"synthetic32": (lambda: synthetic_images(args.train + args.test),
                                DecoderConfig(image_size=32, latent_h=8, latent_w=8, bits_per_cell=8))}
    if not args.no_flickr:
        datasets["flickr64"] = (lambda: flickr_images(args.train + args.test), DecoderConfig())
    payload = {"machine": machine(), "device": args.device, "torch_threads": torch.get_num_threads(), "quick": args.quick,
               "budget_seconds_per_model": args.budget, "n_train": args.train, "n_test": args.test, "datasets": {}}
    for name, (load, dec_cfg) in datasets.items():
        images = load()
        if images is None:
            payload["datasets"][name] = {"skipped": f"{FLICKR} absent"}
            print(f"{name}: skipped (no data)", flush=True)
            continue
        train, test = images[: args.train], images[args.train :]
        enc_cfg = EncoderConfig()
        vae = BinaryVAE(dec_cfg, enc_cfg)
        res = {"device": args.device, "bits_per_image": dec_cfg.latent_spec().bits_per_image, "decoder_config": dec_cfg.to_dict(),
               "encoder_config": enc_cfg.resolve(dec_cfg).to_dict(),
               "parameters": {"decoder_only": vae.decoder.num_parameters(), "vae": vae.num_parameters()}}
        res["steps"] = step_costs(dec_cfg, enc_cfg, train, args.repeats, device=args.device)
        print(name, "step", res["steps"]["step_seconds_median"], flush=True)
        res["race"] = race(name, dec_cfg, enc_cfg, train, test, args.budget,
                           res["steps"]["step_seconds_median"], eval_points, mid_fit, args.fit_steps, args.device)
        png = plot(name, res)
        res["plot"] = str(png.relative_to(PROJECT) if png.is_relative_to(PROJECT) else png)
        for k in ("decoder_only", "vae"):
            r = res["race"][k]
            print(name, k, {x: r[x] for x in ("epochs", "train_seconds", "train_psnr_final", "heldout_psnr_final")},
                  flush=True)
        payload["datasets"][name] = res
    print(f"wrote {write_result(result_name('vae_comparison', args.device), payload)}")


if __name__ == "__main__":
    main()
