import numpy as np
import pytest
import torch

from bitlatent.core.binary import (
    LatentSpec,
    binarize,
    bits_to_signs,
    hard_signs,
    hardness_at,
    logits_to_bits,
    pack_bits,
    unpack_bits,
)


@pytest.mark.parametrize("shape", [(8, 16, 16), (3, 3, 5), (1, 1, 1), (5, 7, 3), (2, 4, 4)])
def test_pack_unpack_round_trip(shape):
    c, h, w = shape
    spec = LatentSpec(h=h, w=w, bits_per_cell=c, image_size=h * 4)
    rng = np.random.default_rng(0)
    bits = rng.integers(0, 2, size=(7, c, h, w), dtype=np.uint8)
    packed = pack_bits(bits)
    assert packed.dtype == np.uint8
    assert packed.shape == (7, (c * h * w + 7) // 8) == (7, spec.bytes_per_image)
    np.testing.assert_array_equal(unpack_bits(packed, spec), bits)
    np.testing.assert_array_equal(unpack_bits(pack_bits(bits.astype(bool)), spec), bits)  # bool input
    np.testing.assert_array_equal(unpack_bits(pack_bits(torch.from_numpy(bits)), spec), bits)  # torch input


def test_documented_bit_order():
    # flatten (C, h, w) in C order; first bit is the most significant bit of byte 0; zero padding
    spec = LatentSpec(h=1, w=3, bits_per_cell=3, image_size=4)  # 9 bits -> 2 bytes
    bits = np.zeros((1, 3, 1, 3), np.uint8)
    bits[0, 0, 0, 0] = 1  # flat index 0 -> 0b1000_0000
    bits[0, 2, 0, 2] = 1  # flat index 8 -> byte 1, msb
    packed = pack_bits(bits)
    assert packed.tolist() == [[0b1000_0000, 0b1000_0000]]
    np.testing.assert_array_equal(unpack_bits(packed, spec), bits)
    little = pack_bits(bits, bit_order="little")
    assert little.tolist() == [[0b0000_0001, 0b0000_0001]]
    spec_little = LatentSpec(h=1, w=3, bits_per_cell=3, image_size=4, bit_order="little")
    np.testing.assert_array_equal(unpack_bits(little, spec_little), bits)


def test_pack_rejects_bad_input():
    with pytest.raises(ValueError):
        pack_bits(np.full((1, 1, 2, 2), 2, np.uint8))
    with pytest.raises(TypeError):
        pack_bits(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(ValueError):
        unpack_bits(np.zeros((1, 3), np.uint8), LatentSpec(h=2, w=2, bits_per_cell=2, image_size=8))


def test_latent_spec_numbers_and_dict():
    spec = LatentSpec(h=16, w=16, bits_per_cell=8, image_size=64)
    assert spec.bits_per_image == 2048
    assert spec.bytes_per_image == 256
    assert spec.bits_per_pixel == 0.5
    assert spec.shape == (8, 16, 16)
    assert LatentSpec.from_dict(spec.to_dict()) == spec
    assert spec.to_dict() == {"h": 16, "w": 16, "bits_per_cell": 8, "image_size": 64, "bit_order": "big", "layout": "CHW"}
    assert LatentSpec.from_dict({"h": 4}) == LatentSpec(h=4)
    with pytest.raises(ValueError):
        LatentSpec.from_dict({"h": 4, "typo": 1})
    with pytest.raises(ValueError):
        LatentSpec(bit_order="middle")
    with pytest.raises(ValueError):
        LatentSpec(h=0)


def test_straight_through_forward_is_exactly_binary_and_gradient_flows():
    torch.manual_seed(0)
    logits = (torch.randn(4, 3, 5, 5) * 0.7).requires_grad_()
    z = binarize(logits, hardness=1.0)
    assert set(z.detach().unique().tolist()) <= {-1.0, 1.0}
    torch.testing.assert_close(z.detach(), torch.where(logits >= 0, 1.0, -1.0), rtol=0, atol=0)
    weights = torch.randn_like(z)
    (z * weights).sum().backward()
    inside = (logits.detach().abs() <= 1).float()  # hardtanh surrogate: identity inside [-1, 1]
    torch.testing.assert_close(logits.grad, weights * inside)
    assert logits.grad.abs().sum() > 0


def test_a_zero_logit_is_bit_one():
    logits = torch.tensor([-2.0, -0.1, 0.0, 0.3], requires_grad=True)
    z = binarize(logits, hardness=1.0)
    assert z.tolist() == [-1.0, -1.0, 1.0, 1.0]
    z.sum().backward()
    assert logits.grad.tolist() == [0.0, 1.0, 1.0, 1.0]  # the clamp's gradient: zero outside [-1, 1]


def test_annealing_interpolates_soft_to_hard():
    logits = torch.tensor([-0.5, 0.25, 2.0], requires_grad=True)
    soft = binarize(logits, hardness=0.0)
    assert soft.tolist() == [-0.5, 0.25, 1.0]
    half = binarize(logits, hardness=0.5)
    torch.testing.assert_close(half.detach(), torch.tensor([-0.75, 0.625, 1.0]))
    half.sum().backward()
    assert logits.grad.tolist() == [1.0, 1.0, 0.0]


def test_hardness_schedule():
    assert hardness_at(0.0, 0.0) == 1.0  # plain STE
    assert hardness_at(0.5, 0.0) == 1.0
    assert hardness_at(0.0, 0.6) == 0.0  # the relaxation at the start
    assert hardness_at(0.3, 0.6) == pytest.approx(0.5)
    assert hardness_at(0.6, 0.6) == 1.0
    assert hardness_at(0.99, 0.6) == 1.0


def test_bits_signs_logits_helpers():
    logits = torch.tensor([[[[-1.0, 0.0], [0.5, -0.0001]]]])
    bits = logits_to_bits(logits)
    assert bits.dtype == np.uint8 and bits.tolist() == [[[[0, 1], [1, 0]]]]
    torch.testing.assert_close(bits_to_signs(bits), hard_signs(logits))
