"""The ``bitlatent`` command: encode images to bits, decode bits to images, and more.

    bitlatent encode photo.jpg more/ -o latents.npz     # fit latents with the frozen decoder
    bitlatent decode latents.npz -o out/                 # render them back to PNGs
    bitlatent encode photo.jpg -o streams.npz --compress # entropy-coded streams (codec.container)
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click
import numpy as np

import bitlatent  # noqa: F401  (sets the offline / no-telemetry environment)

DEFAULT_DECODER = "data/06_models/decoder"
DEFAULT_ENTROPY_MODEL = "data/06_models/entropy_model"


def _load_decoder(path: str):
    from bitlatent.core.decoder import load_decoder

    folder = Path(path)
    if not folder.is_dir() or not any(folder.glob("*.safetensors")):
        raise click.ClickException(
            f"no decoder in {folder}: train one with `make run` or "
            f"`kedro run --pipelines decoder_pretraining`, or pass --decoder")
    try:
        return load_decoder(folder)
    except Exception as error:  # noqa: BLE001 - a damaged or foreign folder: say so, no traceback
        raise click.ClickException(f"cannot load the decoder in {folder}: {error}") from error


def _load_entropy_model(path: str, spec):
    """The entropy model in ``path`` and its model id, checked against the decoder's latent ``spec``."""
    from bitlatent.codec.entropy_model import load_entropy_model

    try:
        model, model_id = load_entropy_model(path)
    except FileNotFoundError as error:
        raise click.ClickException(f"{error}, or pass --entropy-model") from error
    except Exception as error:  # noqa: BLE001 - a damaged or foreign folder: say so, no traceback
        raise click.ClickException(f"cannot load the entropy model in {path}: {error}") from error
    if model.config.latent_shape != spec.shape:
        raise click.ClickException(f"the entropy model in {path} codes latents of {model.config.latent_shape}, "
                                   f"the decoder's are {spec.shape}")
    return model, model_id


def _image_files(inputs: tuple[str, ...]) -> tuple[list[Path], list[Path]]:
    """(files to decode, files left out): each input file as given, and every file under each
    input folder, the ones without an image suffix left out (and listed, not dropped)."""
    from bitlatent.data.sources import IMAGE_SUFFIXES

    files: list[Path] = []
    left_out: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            for path in sorted(p for p in item.rglob("*") if not p.is_dir()):
                (files if path.suffix.lower() in IMAGE_SUFFIXES else left_out).append(path)
        else:
            files.append(item)
    return files, left_out


# Kedro imports ``<package>.cli`` and reads ``cli`` for project-specific ``kedro`` commands;
# bitlatent adds none there (its own commands live in ``main``), so Kedro's defaults stay.
cli = click.Group(name="bitlatent-kedro")


def _parse_betas(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[float, float] | None:
    """"0.5,0.9" -> (0.5, 0.9), each in [0, 1)."""
    if value is None:
        return None
    try:
        betas = tuple(float(v) for v in value.split(","))
    except ValueError:
        betas = ()
    if len(betas) != 2 or not all(0 <= b < 1 for b in betas):
        raise click.BadParameter(f"two numbers in [0, 1) separated by a comma, e.g. 0.5,0.9; got {value!r}")
    return betas


def _fit_options(command):
    """``--steps``, ``--lr``, ``--betas`` and ``--seed``: override the decoder's fitting recipe (encode, evaluate)."""
    options = [
        click.option("--steps", type=click.IntRange(min=1), default=None,
                     help="Fitting steps (default: the decoder's recipe, the run's latent_adaptation.train)."),
        click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=None,
                     help="Fitting learning rate (default: the decoder's recipe)."),
        click.option("--betas", default=None, callback=_parse_betas, metavar="B1,B2",
                     help="Adam betas of the fitting (default: the decoder's recipe)."),
        click.option("--seed", type=int, default=None,
                     help="Seed of the starting pattern (default: the decoder's recipe, pretraining's seed)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def _fit_config(decoder, steps: int | None, lr: float | None, betas: tuple[float, float] | None,
                seed: int | None):
    """The decoder's fitting recipe with the command-line overrides, said on stderr (each value
    with its source); a note when the decoder has no recipe."""
    from bitlatent.core.decoder import choose_fit
    from bitlatent.core.runtime import reuse_freed_memory

    reuse_freed_memory()
    chosen = choose_fit(decoder, given_by="command line", steps=steps, lr=lr, betas=betas, seed=seed)
    if chosen.note:
        click.echo(f"note: {chosen.note}", err=True)
    click.echo(chosen.describe(), err=True)
    return chosen


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(bitlatent.__version__, prog_name="bitlatent")
def main() -> None:
    """bitlatent: binary latent images, text to image, ONNX serving."""


@main.command()
@click.argument("inputs", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Latent file (.npz) to write.")
@click.option("--decoder", "decoder_dir", default=DEFAULT_DECODER, show_default=True, help="Decoder folder.")
@click.option("--compress", is_flag=True,
              help="Write entropy-coded streams (range coded with the entropy model) instead of raw latent bits.")
@click.option("--entropy-model", "entropy_dir", default=DEFAULT_ENTROPY_MODEL, show_default=True,
              help="Entropy model folder (the `compression` pipeline), for --compress.")
@_fit_options
def encode(inputs: tuple[str, ...], output: str, decoder_dir: str, compress: bool, entropy_dir: str,
           steps: int | None, lr: float | None, betas: tuple[float, float] | None, seed: int | None) -> None:
    """Fit binary latents for image files or folders with the frozen decoder."""
    from bitlatent.core.train import fit_latents
    from bitlatent.data.config import DataConfig
    from bitlatent.data.images import decode_image_file
    from bitlatent.data.latent_shards import LatentShard, save_latent_shard

    decoder = _load_decoder(decoder_dir)
    spec = decoder.latent_spec
    entropy = _load_entropy_model(entropy_dir, spec) if compress else None  # fail before the fitting
    files, left_out = _image_files(inputs)
    for path in left_out:
        click.echo(f"ignored {path}: not an image file name (suffix {path.suffix or 'none'})", err=True)
    images, names, failed = [], [], []
    max_pixels = DataConfig().max_image_pixels
    for path in files:
        decoded = decode_image_file(path, spec.image_size, max_pixels)
        if decoded.status != "ok":
            failed.append((path, decoded.status, decoded.detail))
            continue
        images.append(decoded.pixels)
        names.append(str(path))
    for path, reason, detail in failed:
        click.echo(f"skipped {path}: {reason}" + (f" ({detail})" if detail and detail != str(path) else ""), err=True)
    if not images:
        raise click.ClickException(f"no image could be decoded ({len(failed)} file(s) skipped, "
                                   f"{len(left_out)} ignored)")
    result = fit_latents(decoder, np.stack(images), _fit_config(decoder, steps, lr, betas, seed).train)
    try:
        if entropy is None:
            save_latent_shard(Path(output), LatentShard(result.packed, np.asarray(names, dtype=str), spec))
        else:
            bits_per_image = _save_compressed(output, result.packed, names, spec, *entropy)
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error}") from error
    if entropy is None:
        click.echo(f"wrote {len(images)} latents of {spec.bits_per_image} bits ({spec.bits_per_pixel:.3f} bpp) "
                   f"to {output}; reconstruction PSNR {result.psnr:.2f} dB")
    else:
        pixels = spec.image_size * spec.image_size
        click.echo(f"wrote {len(images)} streams of {bits_per_image:.0f} bits on average ({bits_per_image / pixels:.3f} "
                   f"bpp; raw {spec.bits_per_image} bits) to {output}; reconstruction PSNR {result.psnr:.2f} dB")
    if failed:
        click.echo(f"{len(failed)} of {len(files)} file(s) skipped, listed above", err=True)
        sys.exit(1)


def _save_compressed(output: str, packed: np.ndarray, names: list[str], spec, model, model_id: str) -> float:
    """Each latent of ``packed`` as a stream (no caption) in a file of streams; the mean bits per stream."""
    from bitlatent.codec import DEFAULT_STAGES, compress_batch
    from bitlatent.codec.container import save_streams
    from bitlatent.codec.entropy_model import torch_logits
    from bitlatent.core.binary import unpack_bits

    streams = compress_batch(unpack_bits(packed, spec), torch_logits(model), DEFAULT_STAGES, model_id)
    save_streams(output, streams, names, spec.to_dict())
    return 8 * sum(len(s) for s in streams) / len(streams)


def _read_streams(path: str, spec, entropy_dir: str):
    """The latents of a file of streams, packed, and their names: decompressed bit-exact or a click error."""
    from bitlatent.codec import CodecError, decompress_batch
    from bitlatent.codec.container import load_streams
    from bitlatent.codec.entropy_model import torch_logits
    from bitlatent.core.binary import LatentSpec, pack_bits

    try:
        streams = load_streams(path)
        if LatentSpec.from_dict(streams.spec) != spec:
            raise CodecError(f"latent spec {streams.spec} does not match the decoder's {spec}")
        model, model_id = _load_entropy_model(entropy_dir, spec)
        bits = decompress_batch(streams.streams, torch_logits(model), model_id, spec.shape)
    except (CodecError, ValueError) as error:
        raise click.ClickException(f"{path}: {error}") from error
    return pack_bits(bits, spec.bit_order), streams.image_ids


@main.command()
@click.argument("latents", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for the PNGs.")
@click.option("--decoder", "decoder_dir", default=DEFAULT_DECODER, show_default=True, help="Decoder folder.")
@click.option("--entropy-model", "entropy_dir", default=DEFAULT_ENTROPY_MODEL, show_default=True,
              help="Entropy model folder, for a file of streams (`encode --compress`).")
def decode(latents: str, output: str, decoder_dir: str, entropy_dir: str) -> None:
    """Render a latent file (.npz from `encode`, `encode --compress` or a latent shard) to PNG images."""
    from PIL import Image

    from bitlatent.codec.container import is_stream_file
    from bitlatent.core.train import decode_packed
    from bitlatent.data.latent_shards import load_latent_shard

    decoder = _load_decoder(decoder_dir)
    if is_stream_file(latents):
        packed, image_ids = _read_streams(latents, decoder.latent_spec, entropy_dir)
    else:
        try:
            shard = load_latent_shard(Path(latents))
        except Exception as error:  # noqa: BLE001 - a damaged or foreign file (bad zip, bad spec): say so
            raise click.ClickException(f"{latents}: not a readable latent file: {error}") from error
        if shard.spec != decoder.latent_spec:
            raise click.ClickException(f"latent spec {shard.spec} does not match the decoder's {decoder.latent_spec}")
        packed, image_ids = shard.bits, shard.image_ids
    images = decode_packed(decoder, packed)
    folder = Path(output)
    folder.mkdir(parents=True, exist_ok=True)
    for index, (name, image) in enumerate(zip(image_ids, images)):
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(str(name)).stem)[:80] or "image"
        Image.fromarray(image).save(folder / f"{index:05d}_{stem}.png")
    click.echo(f"wrote {len(images)} PNGs to {folder}")


DEFAULT_TEXT_MODEL = "data/06_models/text_to_latent"
DEFAULT_BUNDLE = "data/06_models/onnx"
DEFAULT_LIBRARY = ("data/06_models/pretrain_latents", "data/07_model_output/latents")


def _latent_library(folders: tuple[str, ...]):
    """Every latent shard under the given folders, as one (packed bits, image ids) library."""
    from bitlatent.data.latent_shards import load_latent_folder

    shards = [s for folder in folders if Path(folder).is_dir() for s in load_latent_folder(Path(folder)).values()]
    if not shards:
        raise click.ClickException(f"no latents in {', '.join(folders)}: run `make run` first, or pass --library")
    return np.concatenate([s.bits for s in shards]), np.concatenate([s.image_ids for s in shards])


def image_rows_to_grid(images: np.ndarray, columns: int) -> np.ndarray:
    """uint8 (n, H, W, 3) -> one (rows*H, columns*W, 3) grid, row-major, padded with white."""
    n, height, width, _ = images.shape
    rows = -(-n // columns)
    grid = np.full((rows * height, columns * width, 3), 255, np.uint8)
    for index, image in enumerate(images):
        r, c = divmod(index, columns)
        grid[r * height:(r + 1) * height, c * width:(c + 1) * width] = image
    return grid


@main.command()
@click.argument("prompts", nargs=-1, required=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="PNG to write (a grid for several).")
@click.option("--mode", type=click.Choice(["retrieve", "generate", "refine"]), default="retrieve", show_default=True,
              help="retrieve: the nearest training latent by Hamming distance of the codes (the best images today); "
                   "generate: a latent drawn from the cell prior, cell by cell (the predicted bits when the text "
                   "model has no prior); refine: the retrieved latent with its cells least likely given the prompt "
                   "drawn again from the cell prior (without a prior: moved toward the predicted bits).")
@click.option("--samples", type=click.IntRange(min=1, max=64), default=1, show_default=True, help="Images per prompt.")
@click.option("--temperature", type=click.FloatRange(min=0.0), default=None,
              help="0: the most likely latent; above 0: sampled (with --seed), more varied as it grows. "
                   "Default: 1 for generate and refine from a cell prior (greedy draws give background only), else 0.")
@click.option("--guidance", type=click.FloatRange(min=0.0), default=None,
              help="generate / refine from a cell prior: classifier-free guidance weight, 1 = none, higher follows the "
                   "caption more closely. Default: the text model's prior_guidance.")
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="refine: 0 keeps the retrieved latent, 1 is generate; with a cell prior the fraction of its cells "
                   "drawn again, without one the fraction of its disagreeing bits flipped.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--scale", type=click.IntRange(1, 16), default=1, show_default=True, help="Pixel upscaling of the PNG.")
@click.option("--decoder", "decoder_dir", default=DEFAULT_DECODER, show_default=True)
@click.option("--text-model", default=DEFAULT_TEXT_MODEL, show_default=True)
@click.option("--library", multiple=True, default=DEFAULT_LIBRARY, show_default=True,
              help="Latent folders retrieve/refine search (--torch only; the ONNX bundle carries its own).")
@click.option("--bundle", default=DEFAULT_BUNDLE, show_default=True, help="ONNX export (the `export` pipeline).")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True,
              help="ONNX models: auto = fp16 on CUDA when the bundle has it, else fp32 (the graphs that match torch); "
                   "int8 = the int8 decoder on CPU (faster, ~0.3 dB lower PSNR).")
@click.option("--torch", "use_torch", is_flag=True, help="Run the PyTorch models instead of the ONNX bundle.")
def generate(prompts, output, mode, samples, temperature, guidance, strength, seed, scale, decoder_dir, text_model,
             library, bundle, precision, use_torch):
    """Text to image: one PNG, or a grid (a row per prompt, a column per sample).

    Runs the ONNX export with onnxruntime by default; --torch runs the PyTorch models.
    """
    import warnings

    from PIL import Image

    from bitlatent.inference.prompts import validate_prompts

    try:
        prompts = validate_prompts(list(prompts))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="PROMPTS") from error
    if use_torch:
        images = _generate_torch(prompts, mode, samples, temperature, guidance, strength, seed, decoder_dir, text_model,
                                 library)
    else:
        from bitlatent.inference import OnnxGenerator

        if not (Path(bundle) / "manifest.json").is_file():
            raise click.ClickException(
                f"no ONNX export in {bundle}: run `kedro run --pipelines export` (or `make run`), "
                f"or use --torch")
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                generator = OnnxGenerator(bundle, precision=precision)
                images = generator.generate(prompts, mode, temperature=temperature, seed=seed, guidance=guidance,
                                            samples=samples, strength=strength)
            except ValueError as error:
                raise click.ClickException(str(error)) from error
        for warning in caught:
            click.echo(f"warning: {warning.message}", err=True)
    grid = image_rows_to_grid(images, samples if len(prompts) > 1 else min(samples, 8))
    picture = Image.fromarray(grid)
    if scale > 1:
        picture = picture.resize((grid.shape[1] * scale, grid.shape[0] * scale), Image.Resampling.NEAREST)
    Path(output).parent.mkdir(parents=True, exist_ok=True)
    picture.save(output)
    click.echo(f"wrote {output}: {len(prompts)} prompt(s) x {samples} sample(s), mode {mode}"
               f"{' (torch)' if use_torch else ' (onnxruntime)'}")


def _generate_torch(prompts, mode, samples, temperature, guidance, strength, seed, decoder_dir, text_model, library):
    """The PyTorch path of ``generate``: uint8 (prompts * samples, H, W, 3)."""
    import warnings

    from bitlatent.core.binary import pack_bits
    from bitlatent.core.train import decode_packed
    from bitlatent.generation import default_temperature
    from bitlatent.text.encoder import load_text_encoder
    from bitlatent.text.generate import generate_latents
    from bitlatent.text.model import load_text_to_latent

    decoder = _load_decoder(decoder_dir)
    try:
        model = load_text_to_latent(text_model)
    except FileNotFoundError as error:
        raise click.ClickException(str(error)) from error
    if temperature is None:
        temperature = default_temperature(mode, model.prior is not None)
    packed = None
    if mode != "generate":
        packed, _ = _latent_library(tuple(library))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = generate_latents(prompts, load_text_encoder(), model, mode, samples=samples,
                                  temperature=temperature, seed=seed, strength=strength, library=packed,
                                  guidance=guidance)
    for warning in caught:
        click.echo(f"warning: {warning.message}", err=True)
    return decode_packed(decoder, pack_bits(result.bits))  # (prompts * samples, H, W, 3)


@main.command()
@click.option("--format", "data_format", type=click.Choice(["csv", "jsonl", "coco", "folder", "synthetic"]),
              required=True, help="The dataset's format (as data.format).")
@click.option("--path", required=True,
              help="Captions file or folder (as data.path); image paths are found as docs/data.md says.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="data/08_reporting/external_metrics.json",
              show_default=True, help="JSON file for the metrics (with every rejected row and its reasons).")
@click.option("--max-pairs", type=click.IntRange(min=1), default=None, help="Read at most this many rows.")
@_fit_options
@click.option("--decoder", "decoder_dir", default=DEFAULT_DECODER, show_default=True)
@click.option("--text-model", default=DEFAULT_TEXT_MODEL, show_default=True,
              help="Text-to-latent model; alignment metrics are skipped when it is absent.")
def evaluate(data_format, path, output, max_pairs, steps, lr, betas, seed, decoder_dir, text_model) -> None:
    """Metrics of the trained models on an external held-out dataset (nothing is trained on it).

    Every rejected row is listed on stderr with its reasons, and kept in the output JSON
    (``dataset.rejected``)."""
    import json

    from bitlatent.core.io import atomic_write_bytes
    from bitlatent.evaluation.external import NothingToEvaluate, evaluate_external
    from bitlatent.text.model import load_text_to_latent

    decoder = _load_decoder(decoder_dir)
    text = None
    if Path(text_model).is_dir():
        try:
            text = load_text_to_latent(text_model)
        except Exception as error:  # noqa: BLE001 - a damaged or outdated model: say so, no traceback
            raise click.ClickException(f"cannot load the text model in {text_model}: {error}") from error
    else:
        click.echo(f"no text model in {text_model}: reconstruction metrics only", err=True)
    try:
        metrics = evaluate_external(data_format, path, decoder, text, max_pairs=max_pairs,
                                    fit=_fit_config(decoder, steps, lr, betas, seed))
    except NothingToEvaluate as error:
        _list_rejected(error.dataset)
        raise click.ClickException(str(error)) from error
    except (OSError, ValueError) as error:  # no such file, a folder for a file, not of its format
        raise click.ClickException(f"cannot read {path} as {data_format}: {error}") from error
    _list_rejected(metrics["dataset"])
    try:
        atomic_write_bytes(Path(output), json.dumps(metrics, indent=2).encode())
    except OSError as error:
        raise click.ClickException(f"cannot write {output}: {error}") from error
    click.echo(json.dumps({k: v for k, v in metrics.items() if k != "dataset"}, indent=2))
    click.echo(f"wrote {output}")


def _list_rejected(dataset: dict) -> None:
    """One stderr line per rejected row of an external set, then the counts."""
    for row in dataset["rejected"]:
        detail = f" ({row['detail']})" if row["detail"] else ""
        click.echo(f"rejected row {row['ordinal']} ({row['image_path']}): {row['reasons']}{detail}", err=True)
    click.echo(f"{dataset['accepted_rows']} of {dataset['input_rows']} rows accepted, {dataset['rejected_rows']} "
               f"rejected {dataset['reasons'] or ''}; rows per image root: {dataset['image_roots']}", err=True)


def _add_subcommands() -> None:
    from bitlatent.kubeflow.cli import kubeflow
    from bitlatent.serving.cli import serve

    main.add_command(kubeflow)
    main.add_command(serve)


_add_subcommands()

if __name__ == "__main__":
    main()
