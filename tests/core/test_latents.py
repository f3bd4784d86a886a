import numpy as np
import pytest
import torch

from bitlatent.core.binary import LatentSpec, unpack_bits
from bitlatent.core.latents import LatentTable

SPEC = LatentSpec(h=3, w=3, bits_per_cell=2, image_size=12)


def test_sparse_update_touches_only_given_rows():
    table = LatentTable(6, SPEC, init_std=0.1, seed=0)
    before = {k: v.clone() for k, v in table.state_dict().items()}
    rows = torch.tensor([4, 1])
    logits = table.gather(rows)
    assert logits.requires_grad and logits.shape == (2, 2, 3, 3)
    table.step(rows, torch.ones_like(logits), lr=0.05)
    changed = (table.logits != before["logits"]).flatten(1).any(1)
    assert changed.tolist() == [False, True, False, False, True, False]
    assert table.steps.tolist() == [0, 1, 0, 0, 1, 0]


def test_per_row_adam_matches_torch_adam():
    torch.manual_seed(0)
    grads = [torch.randn(1, *SPEC.shape) for _ in range(6)]
    table = LatentTable(3, SPEC, init_std=0.1, seed=3, betas=(0.9, 0.99), clip=None)
    ref = table.logits[2:3].clone().requires_grad_()
    opt = torch.optim.Adam([ref], lr=0.01, betas=(0.9, 0.99), eps=1e-8)
    for k, g in enumerate(grads):
        table.step(torch.tensor([2]), g, lr=0.01)
        if k % 2 == 0:  # row 0 is updated on other steps: it must not disturb row 2
            table.step(torch.tensor([0]), -g, lr=0.01)
        ref.grad = g.clone()
        opt.step()
    torch.testing.assert_close(table.logits[2:3], ref.detach(), rtol=1e-6, atol=1e-7)
    assert table.steps.tolist() == [3, 0, 6]


def test_bias_correction_is_per_row():
    # a row's first update is ~lr * sign(grad), however many steps other rows have taken
    table = LatentTable(2, SPEC, init_std=0.0, seed=0, clip=None)
    for _ in range(5):
        table.step(torch.tensor([0]), torch.ones(1, *SPEC.shape), lr=0.1)
    table.step(torch.tensor([1]), torch.full((1, *SPEC.shape), -3.0), lr=0.1)
    torch.testing.assert_close(table.logits[1], torch.full(SPEC.shape, 0.1), rtol=1e-5, atol=1e-6)


def test_clip_keeps_logits_flippable():
    table = LatentTable(2, SPEC, init_std=0.5, seed=0, clip=1.0)
    for _ in range(50):
        table.step(torch.tensor([0, 1]), torch.ones(2, *SPEC.shape), lr=0.5)
    assert table.logits.min().item() == -1.0 and table.logits.max().item() <= 1.0


def test_keep_best_and_packed_export():
    table = LatentTable(3, SPEC, seed=0, track_best=True)
    rows = torch.arange(3)
    first = torch.full((3, *SPEC.shape), 0.5)
    table.update_best(rows, torch.tensor([1.0, 1.0, 1.0]), first)
    second = torch.full((3, *SPEC.shape), -0.5)
    table.update_best(rows, torch.tensor([0.5, 2.0, 1.0]), second)  # only row 0 improves (ties keep the old)
    bits = table.bits()
    assert bits.dtype == np.uint8
    assert bits[0].max() == 0 and bits[1].min() == 1 and bits[2].min() == 1
    assert table.best_loss.tolist() == [0.5, 1.0, 1.0]
    packed = table.packed()
    assert packed.shape == (3, SPEC.bytes_per_image)
    np.testing.assert_array_equal(unpack_bits(packed, SPEC), bits)
    np.testing.assert_array_equal(table.bits(best=False), (table.logits >= 0).numpy().astype(np.uint8))
    torch.testing.assert_close(table.signs(), torch.from_numpy(bits).float() * 2 - 1)


def test_state_dict_round_trip():
    a = LatentTable(4, SPEC, seed=1, track_best=True)
    a.step(torch.tensor([0, 3]), torch.randn(2, *SPEC.shape), lr=0.1)
    a.update_best(torch.tensor([1]), torch.tensor([0.25]), torch.randn(1, *SPEC.shape))
    b = LatentTable(4, SPEC, seed=2, track_best=True)
    b.load_state_dict(a.state_dict())
    for k, v in a.state_dict().items():
        torch.testing.assert_close(b.state_dict()[k], v, rtol=0, atol=0)
    with pytest.raises(ValueError):
        LatentTable(5, SPEC).load_state_dict(a.state_dict())


def test_every_row_starts_from_one_pattern():
    spec = LatentSpec(h=4, w=4, bits_per_cell=4, image_size=16)
    shared = LatentTable(5, spec, init_std=0.3, seed=3)
    assert all(torch.equal(shared.logits[i], shared.logits[0]) for i in range(5))
    assert shared.logits.abs().max() > 0  # a pattern, not zeros (ties would leave every bit alike)
    assert torch.equal(LatentTable(2, spec, init_std=0.3, seed=3).logits[0], shared.logits[0])  # a function of the seed
    assert not torch.equal(LatentTable(2, spec, init_std=0.3, seed=4).logits[0], shared.logits[0])
    rows = torch.tensor([1])
    shared.step(rows, torch.ones(1, *spec.shape), lr=0.1)  # rows own their storage: one moves alone
    assert not torch.equal(shared.logits[1], shared.logits[0]) and torch.equal(shared.logits[2], shared.logits[0])
