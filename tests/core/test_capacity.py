import warnings

import pytest
import torch

from bitlatent.core.binary import LatentSpec
from bitlatent.core.capacity import CapacityWarning, capacity_report


def test_capacity_numbers():
    spec = LatentSpec(h=16, w=16, bits_per_cell=8, image_size=64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning expected
        r = capacity_report(spec, 10_000, 500_000)
    assert r.bits_per_image == 2048
    assert r.bits_per_pixel == 0.5
    assert r.total_latent_bits == 20_480_000
    assert r.decoder_bits == 16_000_000
    assert r.bits_per_parameter == 32
    assert r.ratio == pytest.approx(16_000_000 / 20_480_000)
    assert not r.exceeds
    assert r.to_dict()["exceeds"] is False


def test_capacity_warning_when_decoder_exceeds_latents(caplog):
    spec = LatentSpec(h=4, w=4, bits_per_cell=2, image_size=16)  # 32 bits per image
    with pytest.warns(CapacityWarning, match="exceeds"):
        r = capacity_report(spec, 10, 100)  # 3,200 decoder bits vs 320 latent bits
    assert r.exceeds and r.ratio == pytest.approx(10.0)
    assert any("exceeds" in rec.message for rec in caplog.records)


def test_capacity_bits_per_parameter_from_module_dtype():
    spec = LatentSpec(h=4, w=4, bits_per_cell=2, image_size=16)
    module = torch.nn.Linear(3, 4).to(torch.float16)  # 16 params
    r = capacity_report(spec, 1000, module, warn=False)
    assert r.decoder_parameters == 16 and r.bits_per_parameter == 16 and r.decoder_bits == 256
