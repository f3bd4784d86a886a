"""Where ONNX Runtime really runs: one function opens every bitlatent session and checks it.

ONNX Runtime lists ``CUDAExecutionProvider`` whenever onnxruntime-gpu is installed, but a session
asked for it quietly runs on the CPU when the CUDA or cuDNN libraries cannot be loaded. So a
session's providers are read back (``session.get_providers()``) and judged by ``check_placement``,
a pure function of (requested device, available providers, providers the session got):

* ``device="cpu"``: the CPU provider.
* ``device="cuda"``: CUDA or a ``ProviderError`` naming what is missing: the CUDA provider itself
  (onnxruntime, not onnxruntime-gpu, is installed) or the CUDA / cuDNN libraries it loads.
* ``device="auto"``: CUDA when the session really got it; otherwise the CPU, with a warning when
  CUDA was listed but did not load (the caller then picks CPU settings: fp32, CPU batch sizes).

No torch.
"""

from __future__ import annotations

import ctypes
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CUDA", "CPU", "DEVICES", "CUDA_LIBRARIES", "ProviderError", "Placement", "requested_providers",
           "check_placement", "missing_cuda_libraries", "open_session"]  # fmt: skip

log = logging.getLogger(__name__)

CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
DEVICES = ("auto", "cpu", "cuda")
CUDA_LIBRARIES = ("libcudart", "libcublas", "libcublasLt", "libcufft", "libcurand", "libcudnn")
"""The shared libraries ONNX Runtime's CUDA provider loads (CUDA runtime, cuBLAS, cuFFT, cuRAND, cuDNN)."""
GPU_EXTRA = "install the gpu extra (onnxruntime-gpu instead of onnxruntime: `make install EXTRA=gpu`)"
CUDA_IMAGE = "deploy/docker/Dockerfile.server-gpu carries them"


class ProviderError(RuntimeError):
    """The requested device cannot be used; the message says what is missing."""


@dataclass(frozen=True)
class Placement:
    """Where a session runs, judged from what it was asked and what it got."""

    device: str
    """The requested device: "auto", "cpu" or "cuda"."""
    providers: tuple[str, ...]
    """The providers the session really uses, in ONNX Runtime's order (``session.get_providers()``)."""
    warning: str | None = None
    """Why an "auto" session runs on the CPU although CUDA was listed; None otherwise."""

    @property
    def on_cuda(self) -> bool:
        """The session really runs on CUDA: pick fp16 graphs and GPU batch sizes only then."""
        return bool(self.providers) and self.providers[0] == CUDA


def _check_device(device: str) -> None:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")


def requested_providers(device: str, available: list[str] | tuple[str, ...]) -> list[str]:
    """The providers to ask a session for: CUDA then CPU when ``device`` allows CUDA and onnxruntime
    lists it, else the CPU. ``device="cuda"`` without the CUDA provider is a ``ProviderError``."""
    _check_device(device)
    if device == "cuda" and CUDA not in available:
        raise ProviderError(f"device='cuda' but this onnxruntime has no {CUDA} (it offers {list(available)}): "
                            f"{GPU_EXTRA}")  # fmt: skip
    return [CUDA, CPU] if device != "cpu" and CUDA in available else [CPU]


def check_placement(device: str, available: list[str] | tuple[str, ...], used: list[str] | tuple[str, ...],
                    missing: list[str] | tuple[str, ...] = ()) -> Placement:  # fmt: skip
    """Judge a session: ``device`` asked for, ``available`` providers, ``used`` (its
    ``get_providers()``), ``missing`` CUDA libraries if known (``missing_cuda_libraries``).
    Raises ``ProviderError`` when ``device="cuda"`` did not get CUDA."""
    wanted = requested_providers(device, available)
    used = tuple(used)
    if CUDA not in wanted or (used and used[0] == CUDA):
        return Placement(device, used)
    which = ", ".join(missing) if missing else "one of " + ", ".join(CUDA_LIBRARIES)
    reason = (f"onnxruntime lists {CUDA} but the session fell back to {list(used)}: the CUDA or cuDNN "
              f"libraries were not found ({which}); use a CUDA base image with cuDNN ({CUDA_IMAGE}) or put "
              f"them on LD_LIBRARY_PATH")  # fmt: skip
    if device == "cuda":
        raise ProviderError(f"device='cuda': {reason}")
    return Placement(device, used, f"device='auto' runs on the CPU (fp32 graphs, CPU batch sizes): {reason}")


def missing_cuda_libraries() -> list[str]:
    """Those of ``CUDA_LIBRARIES`` the dynamic loader cannot open (any version), for error messages."""
    missing = []
    for name in CUDA_LIBRARIES:
        for soname in (f"{name}.so", *(f"{name}.so.{v}" for v in range(13, 8, -1))):
            try:
                ctypes.CDLL(soname)
                break
            except OSError:
                continue
        else:
            missing.append(name)
    return missing


def _preload_cuda() -> None:
    """Let onnxruntime-gpu find the CUDA / cuDNN libraries of pip's nvidia-* packages (torch's)."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        try:
            preload()
        except Exception as error:  # noqa: BLE001 - the session check below says what is missing
            log.debug("onnxruntime.preload_dlls failed: %s", error)


def open_session(path: str | Path, options: Any, device: str) -> tuple[Any, Placement]:
    """An ``onnxruntime.InferenceSession`` for ``path`` on ``device`` and where it really runs.

    ``device="cuda"`` that does not get CUDA raises ``ProviderError``; ``"auto"`` that falls back
    warns (``UserWarning`` and the log) and returns the CPU placement."""
    import onnxruntime as ort

    available = list(ort.get_available_providers())
    wanted = requested_providers(device, available)
    if CUDA in wanted:
        _preload_cuda()
    session = ort.InferenceSession(str(path), options, providers=wanted)
    used = list(session.get_providers())
    fell_back = CUDA in wanted and (not used or used[0] != CUDA)
    placement = check_placement(device, available, used, missing_cuda_libraries() if fell_back else ())
    if placement.warning:
        warnings.warn(placement.warning, stacklevel=2)
        log.warning("%s", placement.warning)
    log.info("%s runs on %s", Path(path).name, list(placement.providers))
    return session, placement
