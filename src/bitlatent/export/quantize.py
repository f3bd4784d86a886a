"""An int8 decoder for CPUs: ``decoder.onnx`` -> ``decoder.int8.onnx`` (ONNX Runtime static quantisation).

    decoder.int8.onnx   the same inputs and outputs as decoder.onnx; convolutions, SiLU and the
                        residual adds run on 8-bit integers (QDQ form: QuantizeLinear -> op ->
                        DequantizeLinear, which ONNX Runtime's CPU provider fuses into integer kernels:
                        VNNI / AMX-INT8 on recent Xeons)

Weights are quantised per output channel (int8, symmetric, 7 bits: ``reduce_range``), activations
per tensor (uint8) with ranges read off real latents (``calibration_bits``: the bundle's library,
or random bits when the bundle has none). It is an opt-in trade of quality for speed (``OnnxGenerator(precision="int8")``,
``bitlatent serve --precision int8``); the fp32 graph stays the default.

The export's parity check measures the int8 graph against torch on latents it was not calibrated
on; below ``ExportConfig.int8_min_psnr`` the bundle goes without it (``export_bundle``).

Why 7-bit weights: on x86 CPUs without VNNI (AVX2 only), ONNX Runtime's uint8 x int8 kernels add
pairs of products in int16 (VPMADDUBSW), which saturates with full-range weights; a bundle is
exported once and served on whatever CPU runs it, so the graph must be safe on all of them. The
measurements behind both choices are in docs/experiments.md (2026-11-27, int8 decoder).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

__all__ = ["quantize_decoder_int8"]

log = logging.getLogger(__name__)

def quantize_decoder_int8(src: str | Path, dst: str | Path, calibration_bits: np.ndarray, batch: int = 32) -> Path:
    """Write the int8 form of the decoder graph ``src`` to ``dst``.

    ``calibration_bits``: uint8 (M, C, h, w) latents in {0, 1}, M >= 1, whose activations set the
    quantisation ranges (the more like real latents, the better).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    bits = np.ascontiguousarray(calibration_bits, dtype=np.uint8)
    if bits.ndim != 4 or len(bits) == 0:
        raise ValueError(f"calibration_bits must be uint8 (M, C, h, w) with M >= 1, got shape {bits.shape}")

    class Batches(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter([{"bits": bits[lo : lo + batch]} for lo in range(0, len(bits), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self._batches, None)

    dst = Path(dst)
    scratch = Path(tempfile.mkdtemp(prefix="quantize-", dir=dst.parent))
    try:
        prepared = scratch / "prepared.onnx"
        quant_pre_process(str(src), str(prepared))  # shape inference + basic graph clean-up
        quantize_static(
            str(prepared), str(scratch / "int8.onnx"), Batches(),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, reduce_range=True, calibrate_method=CalibrationMethod.MinMax,
        )  # fmt: skip
        onnx.checker.check_model(str(scratch / "int8.onnx"), full_check=False)
        (scratch / "int8.onnx").replace(dst)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("int8 decoder: %s (%d calibration latents)", dst.name, len(bits))
    return dst
