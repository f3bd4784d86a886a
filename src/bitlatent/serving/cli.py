"""``bitlatent serve``: the KServe predictor on one exported bundle (``python -m bitlatent.serving``).

Click only at import time: kserve, onnxruntime and the bundle load when the command runs.
"""

from __future__ import annotations

import logging

import click

DEFAULT_BUNDLE = "data/06_models/onnx"


@click.command("serve")
@click.option("--bundle", "bundle_dir", default=DEFAULT_BUNDLE, show_default=True,
              type=click.Path(file_okay=False), help="ONNX bundle folder (kedro run --pipelines export).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; 0.0.0.0 (in a container) makes it reachable from other machines.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535))
@click.option("--name", default="bitlatent", show_default=True, help="Model name in /v2/models/<name>/infer.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True)
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8"]), default="auto", show_default=True,
              help="auto: fp16 on CUDA when the bundle has it, else fp32 (the graphs that match torch); "
                   "int8: the int8 decoder on CPU (faster, ~0.3 dB lower PSNR).")
@click.option("--threads", type=click.IntRange(1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--max-batch", type=click.IntRange(1), default=16, show_default=True,
              help="Images per request (prompts x samples); more is a 400.")
@click.option("--max-prompt-chars", type=click.IntRange(1), default=2000, show_default=True)
@click.option("--max-body-bytes", type=click.IntRange(1024), default=1 << 20, show_default=True)
@click.option("--truncate-long-prompts", is_flag=True,
              help="Cut prompts over the model's token limit instead of answering 400.")
@click.option("--spin", is_flag=True,
              help="Let ONNX Runtime's idle threads spin-wait: lower latency when the server owns its cores.")
@click.option("--access-log", is_flag=True, help="Log every request.")
def serve(bundle_dir: str, host: str, port: int, name: str, device: str, precision: str, threads: int | None,
          max_batch: int, max_prompt_chars: int, max_body_bytes: int, truncate_long_prompts: bool,
          spin: bool, access_log: bool) -> None:  # fmt: skip
    """Serve text -> image over the Open Inference Protocol v2 (KServe custom predictor)."""
    from bitlatent.inference import BundleError

    from .app import serve as run
    from .predictor import ServingLimits

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    limits = ServingLimits(max_batch=max_batch, max_prompt_chars=max_prompt_chars, max_body_bytes=max_body_bytes,
                           truncate_long_prompts=truncate_long_prompts)  # fmt: skip
    try:
        run(bundle_dir, host, port, name=name, limits=limits, device=device, precision=precision,
            threads=threads, spinning=spin, access_log=access_log)  # fmt: skip
    except (FileNotFoundError, BundleError) as error:
        raise click.ClickException(str(error)) from error


__all__ = ["serve"]
