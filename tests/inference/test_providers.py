"""Where ONNX Runtime runs: the placement decision for every combination of (requested device,
listed providers, providers a session got), and real sessions on this machine's onnxruntime."""

from __future__ import annotations

import logging
import warnings

import onnxruntime as ort
import pytest

from bitlatent.inference import OnnxGenerator, ProviderError, cpu_decode_batch
from bitlatent.inference.providers import CPU, CUDA, check_placement, missing_cuda_libraries, requested_providers

CPU_ONLY = [CPU]
GPU_BUILD = [CUDA, CPU]


@pytest.mark.parametrize(("device", "available", "expected"), [
    ("cpu", CPU_ONLY, [CPU]), ("cpu", GPU_BUILD, [CPU]), ("auto", CPU_ONLY, [CPU]),
    ("auto", GPU_BUILD, [CUDA, CPU]), ("cuda", GPU_BUILD, [CUDA, CPU]),
])  # fmt: skip
def test_requested_providers(device, available, expected):
    assert requested_providers(device, available) == expected


def test_cuda_without_the_cuda_provider_says_to_install_the_gpu_extra():
    for used in ([CPU], []):
        with pytest.raises(ProviderError, match=r"no CUDAExecutionProvider.*install the gpu extra.*onnxruntime-gpu"):
            check_placement("cuda", CPU_ONLY, used)
    with pytest.raises(ValueError, match="device must be one of"):
        requested_providers("tpu", GPU_BUILD)


def test_cuda_that_fell_back_names_the_missing_libraries_and_the_cuda_image():
    with pytest.raises(ProviderError, match=r"fell back.*CUDA or cuDNN libraries were not found \(libcudnn\).*CUDA base image"):
        check_placement("cuda", GPU_BUILD, [CPU], missing=["libcudnn"])
    with pytest.raises(ProviderError, match=r"one of libcudart, libcublas.*libcudnn"):
        check_placement("cuda", GPU_BUILD, [CPU])  # the loader found them all, the provider still did not load


def test_auto_that_fell_back_warns_and_runs_on_the_cpu():
    placement = check_placement("auto", GPU_BUILD, [CPU], missing=["libcudart", "libcudnn"])
    assert not placement.on_cuda and placement.providers == (CPU,)
    assert "CPU batch sizes" in placement.warning and "libcudart, libcudnn" in placement.warning


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_session_that_got_cuda_runs_on_cuda(device):
    placement = check_placement(device, GPU_BUILD, [CUDA, CPU])
    assert placement.on_cuda and placement.warning is None


@pytest.mark.parametrize(("device", "available"), [("cpu", GPU_BUILD), ("cpu", CPU_ONLY), ("auto", CPU_ONLY)])
def test_the_cpu_when_cuda_was_not_asked_for_is_no_warning(device, available):
    placement = check_placement(device, available, [CPU])
    assert not placement.on_cuda and placement.warning is None


def test_missing_cuda_libraries_lists_only_known_names():
    assert set(missing_cuda_libraries()) <= {"libcudart", "libcublas", "libcublasLt", "libcufft", "libcurand", "libcudnn"}


# ----------------------------------------------------------------------------- this machine's onnxruntime


needs_cpu_build = pytest.mark.skipif(CUDA in ort.get_available_providers(), reason="onnxruntime-gpu is installed")


@needs_cpu_build
def test_device_cuda_on_a_cpu_onnxruntime_is_a_clear_error(tiny):
    with pytest.raises(ProviderError, match="install the gpu extra"):
        OnnxGenerator(tiny.bundle, device="cuda", verify=False)


@pytest.mark.parametrize("device", ["cpu", "auto"])
def test_cpu_and_auto_sessions_report_the_provider_they_really_use(tiny, device, caplog):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning without a CUDA provider listed
        with caplog.at_level(logging.INFO, logger="bitlatent.inference.providers"):
            generator = OnnxGenerator(tiny.bundle, device=device, verify=False, max_batch=1 << 20)
    used = generator.text_session.get_providers()
    assert generator.decoder_session.get_providers() == used
    described = generator.describe()
    assert described["providers"] == used and described["device"] in ("cpu", "cuda")
    if CUDA not in ort.get_available_providers():
        assert used == [CPU] and described["precision"] == "fp32" and not generator.placement.on_cuda
        assert described["decode_batch"] == cpu_decode_batch(generator.manifest, 1 << 20) < 1 << 20  # CPU sizes
    assert f"decoder.onnx runs on {used}" in caplog.text
