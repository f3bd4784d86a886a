import numpy as np
import pytest
import torch

from bitlatent import generation
from bitlatent.generation import cell_uniforms, cells_to_redraw
from bitlatent.text.encoder import TextFeatures
from bitlatent.text.prior import CellPrior, CellPriorConfig, cell_values, cells_of, grid_of, sample_prior

TINY = dict(latent_h=3, latent_w=4, bits_per_cell=2, width=32, heads=2, layers=2, dropout=0.0)


def tiny(**kw) -> CellPrior:
    torch.manual_seed(0)
    return CellPrior(CellPriorConfig(**{**TINY, **kw})).eval()


def test_cells_round_trip_in_raster_order():
    bits = torch.arange(2 * 3 * 4 * 2).reshape(2, 2, 3, 4)  # (B, C, h, w)
    cells = cells_of(bits)  # (B, 12, C)
    assert cells.shape == (2, 12, 2)
    assert cells[0, 5].tolist() == bits[0, :, 1, 1].tolist()  # cell 5 = row 1, column 1
    assert torch.equal(grid_of(cells, 3, 4), bits)
    bits3 = torch.tensor([[1, 0, 1], [0, 0, 1]])
    assert cell_values(bits3).tolist() == [5, 1]  # bit 0 is the most significant
    assert np.array_equal(generation.cell_bits(cell_values(bits3).numpy(), 3), bits3.numpy())


def test_a_patch_of_two_orders_cells_block_by_block_as_numpy_does():
    bits = torch.arange(2 * 3 * 4 * 6).reshape(2, 3, 4, 6)  # (B, C, h, w)
    cells = cells_of(bits, patch=2)  # (B, 24, C): block (0, 0), (0, 1), (0, 2), (1, 0)... four cells each
    assert [cells[0, i].tolist() for i in range(4)] == [bits[0, :, y, x].tolist() for y, x in ((0, 0), (0, 1), (1, 0), (1, 1))]
    assert cells[0, 4].tolist() == bits[0, :, 0, 2].tolist()  # block (0, 1) starts at column 2
    assert cells[0, 12].tolist() == bits[0, :, 2, 0].tolist()  # block (1, 0) starts at row 2
    assert torch.equal(grid_of(cells, 4, 6, patch=2), bits)
    np.testing.assert_array_equal(generation.cells_in_prior_order(bits.numpy(), 2), cells.numpy())
    np.testing.assert_array_equal(generation.grid_from_prior_order(cells.numpy(), 4, 6, 2), bits.numpy())
    with pytest.raises(ValueError, match="patch 2 must divide"):
        CellPriorConfig(**{**TINY, "patch": 2})  # 3 rows


def test_a_block_of_cells_sees_only_the_blocks_before_it():
    model = tiny(latent_h=4, latent_w=4, patch=2)
    assert model.config.num_steps == 4 and model.config.cells_per_step == 4
    states, mask = torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool)
    bits = torch.randint(0, 2, (1, 2, 4, 4), dtype=torch.uint8)
    flipped = bits.clone()
    flipped[0, :, 0, 3] ^= 1  # block 1's second cell: prior-order cell 5
    with torch.no_grad():
        a, b = model(states, mask, bits), model(states, mask, flipped)  # (1, 16, 2^C)
    torch.testing.assert_close(a[:, :8], b[:, :8])  # blocks 0 and 1, the flipped cell's own block included
    assert not torch.allclose(a[:, 8:], b[:, 8:])  # later blocks see it


def test_cached_steps_of_blocks_give_the_teacher_forced_logits():
    model = tiny(latent_h=4, latent_w=4, patch=2)
    states, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    bits = torch.randint(0, 2, (2, 2, 4, 4), dtype=torch.uint8)
    with torch.no_grad():
        tokens = model.encode_text(states)
        cells = model.cells_of(bits)  # (2, 16, 2)
        whole = model.cell_logits(tokens, mask, cells)  # (2, 16, 4)
        keys, values = model.empty_cache(2)
        context = model.context(tokens, mask)
        blocks = cells.reshape(2, 4, 8)  # 4 cells x 2 bits per step
        for t in range(4):
            logits, key, value = model.step(blocks[:, t - 1], torch.tensor([t]), keys, values, context)
            model.store_step(keys, values, t, key, value)
            torch.testing.assert_close(logits.reshape(2, 4, 4), whole[:, 4 * t : 4 * t + 4], atol=1e-5, rtol=1e-5)


def test_a_block_prior_draws_refines_and_scores_like_the_cell_prior():
    model = tiny(latent_h=4, latent_w=4, patch=2, caption_dropout=0.2)
    states, mask = torch.randn(3, 5, 384), torch.ones(3, 5, dtype=torch.bool)
    u = cell_uniforms(1, 1, np.arange(3), 16)
    drawn = model.sample(states, mask, 1.0, u, guidance=2.0)
    assert drawn.shape == (3, 2, 4, 4)
    torch.testing.assert_close(drawn, model.sample(states, mask, 1.0, u, guidance=2.0))
    torch.testing.assert_close(model.refine(states, mask, drawn, 0.0, 1.0, u, 2.0), drawn)  # strength 0 keeps all
    torch.testing.assert_close(model.refine(states, mask, 1 - drawn, 1.0, 1.0, u, 2.0), drawn)  # 1 draws all again
    half = model.refine(states, mask, 1 - drawn, 0.5, 1.0, u, 2.0)
    kept = (model.cells_of(half) == model.cells_of(1 - drawn)).all(-1)  # (3, 16)
    assert kept.sum(1).ge(8).all()  # at least the half not redrawn
    scores = model.cell_log_likelihoods(states, mask, drawn, guidance=2.0)
    assert scores.shape == (3, 16) and (scores <= 0).all()


def test_torch_cell_values_are_the_numpy_ones():
    cells = np.random.default_rng(0).integers(0, 2, (5, 7, 6), dtype=np.uint8)
    np.testing.assert_array_equal(cell_values(torch.from_numpy(cells)).numpy(), generation.cell_values(cells))


def test_a_cell_sees_only_the_cells_before_it():
    model = tiny()
    states, mask = torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool)
    bits = torch.randint(0, 2, (1, 2, 3, 4), dtype=torch.uint8)
    flipped = bits.clone()
    flipped[0, :, 1, 2] ^= 1  # cell 6
    with torch.no_grad():
        a, b = model(states, mask, bits), model(states, mask, flipped)  # (1, 12, 2^C)
    torch.testing.assert_close(a[:, :7], b[:, :7])  # cells 0..6 do not see cell 6's bits
    assert not torch.allclose(a[:, 7:], b[:, 7:])  # later cells do


def test_cached_steps_give_the_teacher_forced_logits():
    """``step`` (one cell at a time, keys and values cached) computes row t of ``cell_logits``."""
    model = tiny()
    with torch.no_grad():
        model.start.normal_(0.0, 1.0)  # the start vector must matter at t = 0
    states = torch.randn(2, 5, 384)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]], dtype=torch.bool)
    bits = torch.randint(0, 2, (2, 2, 3, 4), dtype=torch.uint8)
    with torch.no_grad():
        tokens = model.encode_text(states)
        whole = model.cell_logits(tokens, mask, cells_of(bits))  # (2, 12, 4)
        keys, values = model.empty_cache(2)
        context = model.context(tokens, mask)  # the caption's part, once
        cells = cells_of(bits)
        for t in range(12):
            logits, key, value = model.step(cells[:, t - 1], torch.tensor([t]), keys, values, context)
            assert [k.shape for k in key] == [v.shape for v in value] == [(2, 2, 1, 16)] * 2  # layers x (B, H, 1, d/H): cell t's only
            model.store_step(keys, values, t, key, value)
            torch.testing.assert_close(logits, whole[:, t], atol=1e-5, rtol=1e-5)
    assert len(keys) == len(values) == 2
    for cache in [*keys, *values]:
        assert cache.shape == (2, 2, 12, 16) and cache.abs().amin(dim=(0, 1, 3)).gt(0).all(), "every slot written"


def test_samples_follow_the_seed_and_the_caption_decides():
    model = tiny()
    rng = np.random.default_rng(0)
    feats = TextFeatures(rng.standard_normal((9, 384)).astype(np.float16), np.array([0, 4, 9]),
                         np.zeros((2, 384), np.float16))
    def uniforms(seed, samples=1):
        return cell_uniforms(seed, samples, np.arange(2), 12)

    one = sample_prior(model, feats, temperature=1.0, uniforms=uniforms(3))
    assert one.shape == (2, 2, 3, 4) and one.dtype == np.uint8 and set(np.unique(one)) <= {0, 1}
    np.testing.assert_array_equal(one, sample_prior(model, feats, temperature=1.0, uniforms=uniforms(3)))
    assert not np.array_equal(one, sample_prior(model, feats, temperature=1.0, uniforms=uniforms(4)))
    greedy = sample_prior(model, feats, temperature=0.0)
    np.testing.assert_array_equal(greedy, sample_prior(model, feats, temperature=0.0, uniforms=uniforms(9)))
    three = sample_prior(model, feats, temperature=1.0, uniforms=uniforms(3, 3), samples=3)  # prompt-major
    assert three.shape == (6, 2, 3, 4)
    np.testing.assert_array_equal(three[0::3], one)  # sample 0 of each caption: seed 3's first draw
    with pytest.raises(ValueError, match="uniforms"):
        sample_prior(model, feats, temperature=1.0)


def test_config_validation():
    with pytest.raises(ValueError):
        CellPriorConfig(**{**TINY, "width": 30, "heads": 4})
    with pytest.raises(ValueError):
        CellPriorConfig(**{**TINY, "layers": 0})
    with pytest.raises(ValueError, match="C must be <= 10"):
        CellPriorConfig(**{**TINY, "bits_per_cell": 16})
    with pytest.raises(ValueError, match="dropout and caption_dropout"):
        CellPriorConfig(**{**TINY, "dropout": 1.0})
    with pytest.raises(TypeError, match="attention_dropout"):  # removed: attention never drops out
        CellPriorConfig(**{**TINY, "attention_dropout": 0.1})


def test_only_the_mlps_drop_out():
    """The MLPs train with ``prior_dropout``; attention weights never drop out (the fused kernel)."""
    from bitlatent.text.model import TextToLatentConfig

    plain = TextToLatentConfig(latent_h=4, latent_w=4, prior_layers=1, prior_dropout=0.2).prior_config()
    assert plain.dropout == 0.2
    block = CellPrior(plain).blocks[0]
    assert block.cross.dropout == 0.0 and block.mlp[-1].p == 0.2
    # the MLP dropout acts in training mode only; without it, training passes are repeatable too
    states, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    bits = torch.randint(0, 2, (2, 2, 3, 4), dtype=torch.uint8)
    dropping = CellPrior(CellPriorConfig(**{**TINY, "dropout": 0.5})).train()
    assert not torch.allclose(dropping(states, mask, bits), dropping(states, mask, bits))
    dropping.eval()
    assert torch.equal(dropping(states, mask, bits), dropping(states, mask, bits))
    quiet = CellPrior(CellPriorConfig(**{**TINY, "dropout": 0.0})).train()
    assert torch.equal(quiet(states, mask, bits), quiet(states, mask, bits))


def test_prior_draws_whole_pictures_where_per_bit_averages_do_not():
    """Every caption allows two latents, A or B. Trained on both, the prior's samples are A or B
    (a cell commits, the next ones follow it), never a mix of the two."""
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, 2, (2, 2, 3, 4), dtype=np.uint8)
    targets = torch.from_numpy(np.stack([a, b] * 16))  # (32, C, h, w)
    states, mask = torch.randn(1, 4, 384).expand(32, -1, -1), torch.ones(32, 4, dtype=torch.bool)
    model = tiny().train()
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):  # each cell follows the ones before it with p > 0.999: a mix is rare
        loss = model.loss(states, mask, targets)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    drawn = model.sample(states[:16], mask[:16], temperature=1.0, uniforms=cell_uniforms(0, 1, np.arange(16), 12)).numpy()
    is_a = (drawn == a).all((1, 2, 3))
    is_b = (drawn == b).all((1, 2, 3))
    assert (is_a | is_b).all()
    assert is_a.any() and is_b.any()  # both pictures come out


def test_no_caption_token_replaces_whole_captions_and_guidance_needs_it():
    model = tiny(caption_dropout=0.2)
    tokens, mask = torch.randn(3, 4, 32), torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0], [1, 1, 1, 1]], dtype=torch.bool)
    out, out_mask = model.without_caption(tokens, mask, torch.tensor([False, True, False]))
    torch.testing.assert_close(out[[0, 2]], tokens[[0, 2]])
    assert torch.equal(out[1], model.null.expand(4, -1)) and out_mask[1].tolist() == [True, False, False, False]
    assert torch.equal(out_mask[[0, 2]], mask[[0, 2]])
    with pytest.raises(ValueError, match="no 'no caption' token"):
        tiny().sample(torch.randn(1, 5, 384), torch.ones(1, 5, dtype=torch.bool), guidance=2.0)
    from bitlatent.text.model import TextToLatentConfig

    with pytest.raises(ValueError, match="prior_caption_dropout > 0"):
        TextToLatentConfig(latent_h=2, latent_w=2, bits_per_cell=2, image_size=8, prior_layers=1, prior_guidance=3.0)
    TextToLatentConfig(latent_h=2, latent_w=2, bits_per_cell=2, image_size=8, prior_guidance=3.0)  # no prior: unused
    TextToLatentConfig(latent_h=2, latent_w=2, bits_per_cell=2, image_size=8, prior_layers=1, prior_guidance=3.0,
                       prior_caption_dropout=0.1)  # fmt: skip


def test_guidance_one_is_the_plain_prior_and_zero_ignores_the_caption():
    model = tiny(caption_dropout=0.2)
    with torch.no_grad():  # captions that matter
        model.token_proj.weight.normal_(0.0, 1.0)
        for block in model.blocks:
            block.cross.proj.weight.normal_(0.0, 1.0)
    a, b = torch.randn(2, 5, 384), torch.randn(2, 5, 384)
    mask = torch.ones(2, 5, dtype=torch.bool)

    u = cell_uniforms(0, 1, np.arange(2), 12)

    def draw(states, guidance):
        return model.sample(states, mask, 1.0, u, guidance=guidance)

    assert torch.equal(draw(a, 1.0), model.sample(a, mask, 1.0, u))
    assert torch.equal(draw(a, 0.0), draw(b, 0.0))  # u + 0 * (c - u) = u: no caption at all
    assert not torch.equal(draw(a, 3.0), draw(b, 3.0))


def test_cell_log_likelihoods_are_the_teacher_forced_log_probabilities():
    model = tiny(caption_dropout=0.2)
    states, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    bits = torch.randint(0, 2, (2, 2, 3, 4), dtype=torch.uint8)
    scores = model.cell_log_likelihoods(states, mask, bits)  # (2, 12)
    with torch.no_grad():
        log_p = torch.log_softmax(model(states, mask, bits), -1)  # (2, 12, 4)
    torch.testing.assert_close(scores, log_p.gather(2, cell_values(cells_of(bits))[..., None])[..., 0])
    assert not torch.allclose(model.cell_log_likelihoods(states, mask, bits, guidance=3.0), scores)


def test_refine_keeps_the_likely_cells_and_draws_the_others_again():
    model = tiny(caption_dropout=0.2)
    with torch.no_grad():
        model.head.bias.normal_(0.0, 2.0)  # peaked cell distributions: a drawn cell rarely equals the given one
    states, mask = torch.randn(3, 5, 384), torch.ones(3, 5, dtype=torch.bool)
    start = torch.randint(0, 2, (3, 2, 3, 4), dtype=torch.uint8)

    def refine(strength, seed=0):
        return model.refine(states, mask, start, strength, 1.0, cell_uniforms(seed, 1, np.arange(3), 12), guidance=2.0)

    assert torch.equal(refine(0.0), start)
    assert torch.equal(refine(1.0), model.sample(states, mask, 1.0, cell_uniforms(0, 1, np.arange(3), 12), guidance=2.0))
    half = refine(0.5)
    redraw = cells_to_redraw(model.cell_log_likelihoods(states, mask, start, guidance=2.0).numpy(), 0.5)  # (3, 12)
    changed = (cells_of(half) != cells_of(start)).any(-1).numpy()  # (3, 12)
    assert not (changed & ~redraw).any(), "only the marked cells change"
    assert changed.sum() >= redraw.sum() // 3, "most marked cells are drawn anew"
    assert torch.equal(half, refine(0.5)) and not torch.equal(half, refine(0.5, seed=1))
    feats = TextFeatures(np.random.default_rng(0).standard_normal((9, 384)).astype(np.float16), np.array([0, 4, 9]),
                         np.zeros((2, 384), np.float16))  # fmt: skip
    kept = sample_prior(model, feats, 1.0, cell_uniforms(3, 1, np.arange(2), 12), start=start[:2].numpy(), strength=0.0)
    np.testing.assert_array_equal(kept, start[:2].numpy())
