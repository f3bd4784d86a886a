"""An int8 decoder for CPUs: ``decoder.onnx`` -> ``decoder.int8.onnx`` (ONNX Runtime static quantisation).

    decoder.int8.onnx   the same inputs and outputs as decoder.onnx; every convolution but the
                        head runs in int8 (QDQ form: QuantizeLinear -> int8 Conv -> DequantizeLinear),
                        SiLU, residual adds and the head stay float32

Weights are quantised per output channel (int8, symmetric), activations per tensor (uint8) with
ranges read off real latents (``calibration_bits``: the bundle's library, or random bits when the
bundle has none). ONNX Runtime's CPU provider fuses each QDQ triple into one integer convolution
(VNNI / AMX-INT8 on recent Xeons).

Why the head is left in float32 and the pointwise ops are not quantised: on the default trained
decoder (32x32, 512 bits, 512 library latents to calibrate, 512 others to test), quantising every
op gave images 37.8 dB away from the float32 graph (about -0.3 dB end to end at 26 dB), convolutions
only 40.1 dB, convolutions but the head 43.3 dB (-0.08 dB end to end). At batch 1 on one core of
the 2-core benchmark Xeon, the 64x64 default decoder ran in 2.3 ms against 3.1 ms (float32 ORT)
and 5.7 ms (torch eager). The export's parity check measures the int8 graph against torch on
latents it was not calibrated on and fails below ``ExportConfig.int8_min_psnr``.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx

__all__ = ["quantize_decoder_int8", "QUANTISED_OPS"]

log = logging.getLogger(__name__)

QUANTISED_OPS = ("Conv", "ConvTranspose")
"""Op types that run in int8; everything else stays float32."""


def _head_conv(model: onnx.ModelProto) -> str:
    """Name of the decoder's last convolution (the head, whose output goes through the sigmoid)."""
    convs = [n.name for n in model.graph.node if n.op_type in QUANTISED_OPS]
    if not convs:
        raise ValueError("the decoder graph has no convolution to quantise")
    return convs[-1]


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
        head = _head_conv(onnx.load(str(prepared), load_external_data=False))
        quantize_static(
            str(prepared), str(scratch / "int8.onnx"), Batches(),
            quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            per_channel=True, calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=list(QUANTISED_OPS), nodes_to_exclude=[head],
        )  # fmt: skip
        onnx.checker.check_model(str(scratch / "int8.onnx"), full_check=False)
        (scratch / "int8.onnx").replace(dst)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("int8 decoder: %s (%d calibration latents, head %s kept in float32)", dst.name, len(bits), head)
    return dst
