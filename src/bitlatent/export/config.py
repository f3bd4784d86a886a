"""Settings of the ONNX export (``conf/base/parameters_export.yml``, key ``export``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from bitlatent.config import ConfigGroup

__all__ = ["ExportConfig"]


@dataclass
class ExportConfig(ConfigGroup):
    """How the bundle is exported and how strictly it must match torch."""

    GROUP = "export"
    RETIRED = {"decoder_conv_transpose": True}

    opset: int = 18
    """ONNX opset of both graphs."""
    fp16: bool = True
    """Also write ``decoder.fp16.onnx`` and ``text_to_latent.fp16.onnx`` (float16 weights and
    compute, float32/uint8/int64 inputs and outputs) for GPUs."""
    int8: bool = True
    """Also write ``decoder.int8.onnx`` for CPUs: 8-bit integer arithmetic, calibrated on library
    latents (``bitlatent.export.quantize``); ``OnnxGenerator(precision="int8")`` runs it."""
    int8_calibration_items: int = 256
    """Library latents (random bits without a library) that set the int8 activation ranges."""
    int8_min_psnr: float = 35.0
    """Smallest allowed PSNR (dB) of the int8 decoder's images against torch, on latents it was not
    calibrated on; under it the bundle goes without the int8 decoder, with a warning."""
    parity_batch: int = 8
    """Random latents (decoder) and random prompts (text model) per parity check; the decoder is
    also checked at batch 1, the text model at two batch sizes and sequence lengths."""
    image_tolerance: float = 1e-4
    """Largest allowed |ONNX - torch| over the float images ([0, 1]); over it the export fails."""
    bit_agreement: float = 0.999
    """Smallest allowed fraction of predicted bits (and text-code bits) that agree with torch."""
    prior_tolerance: float = 1e-3
    """Largest allowed |ONNX - torch| of the cell prior's logits and of the text graph's
    ``prior_tokens`` (models with a cell prior); the most likely cell values must all agree."""
    entropy_tolerance: float = 1e-3
    """Largest allowed |ONNX - torch| of the entropy model's logits (``entropy_model.onnx``); streams
    coded with the graph must also decode exactly."""
    fp16_prior_tolerance: float = 0.05
    """The same for the fp16 text graph's ``prior_tokens``."""
    fp16_image_tolerance: float = 0.02
    """The same check for the fp16 decoder (float16 rounding: a few 1e-3 is normal)."""
    fp16_bit_agreement: float = 0.99
    """The same check for the fp16 text model (bits whose logit is near 0 may flip)."""
    seed: int | None = None
    """Seed of the parity inputs; None draws a fresh one each run (recorded in the report)."""
    library_splits: list[str] = field(default_factory=lambda: ["pretrain", "adapt"])
    """Latent splits packed into ``library.npz`` for retrieve / refine; [] for no library."""
    max_library_items: int = 100_000
    """At most this many library latents (the first by image id); 0 for no library."""
    scratch_dir: str | None = None
    """Where the bundle is staged before it is moved into place (None: the system temp folder)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.opset < 18:
            raise ValueError(f"opset must be >= 18, got {self.opset}")
        if self.parity_batch < 2:
            raise ValueError("parity_batch must be >= 2 (batch 1 is checked separately)")
        if not 0.0 < self.bit_agreement <= 1.0 or not 0.0 < self.fp16_bit_agreement <= 1.0:
            raise ValueError("bit agreements must be in (0, 1]")
        if min(self.image_tolerance, self.fp16_image_tolerance, self.prior_tolerance, self.fp16_prior_tolerance,
               self.entropy_tolerance) <= 0:
            raise ValueError("tolerances must be > 0")
        if self.int8_calibration_items < 1:
            raise ValueError("int8_calibration_items must be >= 1")
        self.library_splits = list(self.library_splits or [])
