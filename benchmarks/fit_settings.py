"""Fitting settings compared on a trained decoder: PSNR (and, on synthetic data, attribute accuracy)
of latents fitted afresh with the decoder frozen, for several learning rates, Adam betas and steps.

    python benchmarks/fit_settings.py --project DIR                       # after `kedro run` in DIR
    python benchmarks/fit_settings.py --project DIR --split test --images 128 \\
        --setting 0.3,0.9,0.99,100 --setting 1.0,0.5,0.9,100 --bf16

Reads DIR's ``data/06_models/decoder``, ``data/03_primary/pairs.parquet`` and image shards (the
first ``--images`` distinct images of ``--split``, one chunk). Each ``--setting`` is
``fit_lr,beta1,beta2,fit_steps``; the default list is the sweep behind ``TrainConfig.fit_lr`` and
``fit_betas`` (benchmarks/README.md). Pretraining images fitted afresh show how far frozen-decoder
fitting stays from the jointly trained latents. Writes ``results/fit_settings.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import machine, write_result  # noqa: E402

DEFAULT_SETTINGS = ["0.2,0.9,0.99,100", "0.5,0.9,0.99,100", "0.5,0.5,0.9,100", "1.0,0.5,0.9,100",
                    "2.0,0.5,0.9,100", "1.0,0.5,0.9,300", "0.2,0.9,0.99,600"]


def parse_setting(text: str) -> dict:
    """"lr,beta1,beta2,steps" -> TrainConfig fields."""
    try:
        lr, b1, b2, steps = text.split(",")
        return {"fit_lr": float(lr), "fit_betas": (float(b1), float(b2)), "fit_steps": int(steps)}
    except ValueError:
        raise SystemExit(f"--setting must be fit_lr,beta1,beta2,fit_steps (e.g. 1.0,0.5,0.9,100), got {text!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--project", type=Path, required=True, help="A Kedro project folder after `kedro run`.")
    parser.add_argument("--split", default="pretrain")
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--setting", action="append", default=None, help="fit_lr,beta1,beta2,fit_steps (repeatable).")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast on the CPU (TrainConfig.cpu_bf16).")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    settings = [parse_setting(s) for s in args.setting or DEFAULT_SETTINGS]
    torch.set_num_threads(args.threads)

    import pandas as pd

    from bitlatent.core.decoder import load_decoder
    from bitlatent.core.train import TrainConfig, decode_packed, fit_latents
    from bitlatent.data.shape_checker import attribute_breakdown
    from bitlatent.data.shards import ImageShards

    data = args.project / "data"
    for needed in (data / "06_models/decoder", data / "03_primary/pairs.parquet", data / "03_primary/image_shards"):
        if not needed.exists():
            raise SystemExit(f"{needed} not found: run `kedro run` in {args.project} first")
    decoder = load_decoder(data / "06_models/decoder")
    pairs = pd.read_parquet(data / "03_primary/pairs.parquet")
    rows = pairs[pairs.split == args.split].drop_duplicates("image_id").sort_values(["shard", "row"]).iloc[: args.images]
    if rows.empty:
        raise SystemExit(f"no images in split {args.split!r}")
    shards = ImageShards(data / "03_primary/image_shards")
    target = np.concatenate([shards.images(args.split, int(s), g["row"].to_numpy()) for s, g in rows.groupby("shard")])
    attributes = None
    if "attributes" in rows and rows["attributes"].notna().all():
        attributes = [json.loads(a) for a in rows["attributes"]]  # rows are in the order of target

    results = []
    for setting in settings:
        cfg = TrainConfig(**setting, fit_batch_size=len(target), seed=0, progress=False, cpu_bf16=args.bf16)
        t0 = time.perf_counter()
        fit = fit_latents(decoder, target, cfg)
        record = {**setting, "seconds": time.perf_counter() - t0, "psnr": fit.psnr}
        if attributes is not None:
            record.update(attribute_breakdown(decode_packed(decoder, fit.packed), attributes))
        results.append(record)
        print(json.dumps(record), flush=True)
    payload = {"machine": machine(), "project": str(args.project), "split": args.split, "images": len(target),
               "decoder_parameters": decoder.num_parameters(), "bf16": args.bf16, "threads": args.threads,
               "results": results}
    print(f"wrote {write_result('fit_settings', payload)}")


if __name__ == "__main__":
    main()
