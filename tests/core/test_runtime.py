import logging

import pytest
import torch

from bitlatent.core import runtime
from bitlatent.core.config import TrainConfig


@pytest.mark.parametrize("native", [True, False])
def test_cpu_bf16_only_where_the_cpu_runs_it_natively(monkeypatch, caplog, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    runtime._warn_emulated_bf16.cache_clear()
    with caplog.at_level(logging.WARNING, logger=runtime.__name__):
        rt = runtime.Runtime(TrainConfig(device="cpu", cpu_bf16=True))
    assert rt.amp_dtype == (torch.bfloat16 if native else None)
    assert ("neither AMX nor AVX512-BF16" in caplog.text) == (not native)
    runtime._warn_emulated_bf16.cache_clear()


def test_cpu_bf16_off_means_float32():
    assert runtime.Runtime(TrainConfig(device="cpu", cpu_bf16=False)).amp_dtype is None


def test_native_bf16_probe_answers_a_bool():
    assert isinstance(runtime.cpu_has_native_bf16(), bool)
