"""The ``bitlatent`` command: encode images to bits, decode bits to images, and more.

    bitlatent encode photo.jpg more/ -o latents.npz     # fit latents with the frozen decoder
    bitlatent decode latents.npz -o out/                 # render them back to PNGs
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import numpy as np

import bitlatent  # noqa: F401  (sets the offline / no-telemetry environment)

DEFAULT_DECODER = "data/06_models/decoder"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def _load_decoder(path: str):
    from bitlatent.core.decoder import load_decoder

    folder = Path(path)
    if not folder.is_dir() or not any(folder.glob("*.safetensors")):
        raise click.ClickException(
            f"no decoder in {folder}: train one with `make run` or "
            f"`kedro run --pipelines decoder_pretraining`, or pass --decoder")
    return load_decoder(folder)


def _image_files(inputs: tuple[str, ...]) -> list[Path]:
    files: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files += sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(item)
    return files


# Kedro imports ``<package>.cli`` and reads ``cli`` for project-specific ``kedro`` commands;
# bitlatent adds none there (its own commands live in ``main``), so Kedro's defaults stay.
cli = click.Group(name="bitlatent-kedro")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(bitlatent.__version__, prog_name="bitlatent")
def main() -> None:
    """bitlatent: binary latent images, text to image, ONNX serving."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Latent file (.npz) to write.")
@click.option("--decoder", "decoder_dir", default=DEFAULT_DECODER, show_default=True, help="Decoder folder.")
@click.option("--steps", type=int, default=None, help="Fitting steps (default: the decoder's training setting).")
@click.option("--seed", type=int, default=0, show_default=True)
def encode(inputs: tuple[str, ...], output: str, decoder_dir: str, steps: int | None, seed: int) -> None:
    """Fit binary latents for image files or folders with the frozen decoder."""
    from bitlatent.core.train import TrainConfig, fit_latents
    from bitlatent.data.images import decode_image_file
    from bitlatent.data.latent_shards import LatentShard, save_latent_shard

    decoder = _load_decoder(decoder_dir)
    spec = decoder.latent_spec
    images, names, failed = [], [], []
    for path in _image_files(inputs):
        decoded = decode_image_file(path, spec.image_size, max_pixels=64_000_000)
        if decoded.status != "ok":
            failed.append((path, decoded.status))
            continue
        images.append(decoded.pixels)
        names.append(str(path))
    for path, reason in failed:
        click.echo(f"skipped {path}: {reason}", err=True)
    if not images:
        raise click.ClickException("no image could be decoded")
    config = TrainConfig(seed=seed, **({"fit_steps": steps} if steps is not None else {}))
    result = fit_latents(decoder, np.stack(images), config)
    save_latent_shard(Path(output), LatentShard(result.packed, np.asarray(names, dtype=str), spec))
    click.echo(f"wrote {len(images)} latents of {spec.bits_per_image} bits ({spec.bits_per_pixel:.3f} bpp) "
               f"to {output}; reconstruction PSNR {result.psnr:.2f} dB")
    if failed:
        sys.exit(1)


@main.command()
@click.argument("latents", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for the PNGs.")
@click.option("--decoder", "decoder_dir", default=DEFAULT_DECODER, show_default=True, help="Decoder folder.")
def decode(latents: str, output: str, decoder_dir: str) -> None:
    """Render a latent file (.npz from `encode` or a latent shard) to PNG images."""
    from PIL import Image

    from bitlatent.core.train import decode_packed
    from bitlatent.data.latent_shards import load_latent_shard

    decoder = _load_decoder(decoder_dir)
    try:
        shard = load_latent_shard(Path(latents))
    except (ValueError, OSError) as error:
        raise click.ClickException(f"{latents}: {error}") from error
    if shard.spec != decoder.latent_spec:
        raise click.ClickException(f"latent spec {shard.spec} does not match the decoder's {decoder.latent_spec}")
    images = decode_packed(decoder, shard.bits)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, image) in enumerate(zip(shard.image_ids, images)):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem)[:80] or "image"
        Image.fromarray(image).save(folder / f"{index:05d}_{stem}.png")
    click.echo(f"wrote {len(images)} PNGs to {folder}")


def _add_subcommands() -> None:
    from bitlatent.kubeflow.cli import kubeflow

    main.add_command(kubeflow)


_add_subcommands()

if __name__ == "__main__":
    main()
