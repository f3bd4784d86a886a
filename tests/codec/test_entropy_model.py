"""bitlatent.codec.entropy_model: shapes, what the logits may and may not read, the saved files, and a
model trained on a tiny structured set coding its latents in fewer bits than raw (more so with captions)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from bitlatent.codec import HEADER_BYTES, compress_batch, decompress, decompress_batch, ideal_bits
from bitlatent.codec.entropy_model import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    EntropyModel,
    EntropyModelConfig,
    load_entropy_model,
    model_id,
    save_entropy_model,
    torch_logits,
    weights_bytes,
)
from tests.codec.conftest import SHAPE, TEXT_DIM, structured_data, tiny_model_config

B = 3


def inputs(seed: int = 0, length: int = 5):
    """Random bits (B, C, h, w), known (B, C, h, w), states (B, L, D), mask (B, L), uncaptioned (B,)."""
    g = torch.Generator().manual_seed(seed)
    bits = torch.randint(0, 2, (B, *SHAPE), generator=g, dtype=torch.uint8)
    known = torch.rand(B, *SHAPE, generator=g) < 0.5
    states = torch.randn(B, length, TEXT_DIM, generator=g)
    mask = torch.ones(B, length, dtype=torch.bool)
    mask[1, 3:] = False
    return bits, known, states, mask, torch.tensor([False, False, True])


@pytest.fixture(scope="module", params=[1, 2], ids=lambda p: f"patch{p}")
def fresh(request) -> EntropyModel:
    """An untrained model whose tokens are single cells (patch 1) or 2x2 blocks of cells (patch 2)."""
    torch.manual_seed(0)
    return EntropyModel(replace(tiny_model_config(), patch=request.param)).eval()


def test_logits_have_the_latents_shape_and_the_loss_is_nats_per_hidden_bit(fresh):
    bits, known, states, mask, uncaptioned = inputs()
    with torch.no_grad():
        logits = fresh(bits, known, states, mask, uncaptioned)
    assert logits.shape == (B, *SHAPE) and logits.dtype == torch.float32 and torch.isfinite(logits).all()
    torch.manual_seed(1)
    loss = fresh.train().masked_bce(bits, states, mask, uncaptioned)
    fresh.eval()
    assert loss.ndim == 0 and 0.3 < loss.item() < 1.5  # near ln 2 = 0.69 for a fresh model on random bits
    loss.backward()
    assert all(p.grad is not None for n, p in fresh.named_parameters() if n != "null")


def test_unknown_bits_and_an_uncaptioned_rows_caption_are_not_read(fresh):
    bits, known, states, mask, uncaptioned = inputs()
    with torch.no_grad():
        logits = fresh(bits, known, states, mask, uncaptioned)
        flipped = fresh(torch.where(known, bits, 1 - bits), known, states, mask, uncaptioned)
        other_caption = fresh(bits, known, states + 1.0, mask, uncaptioned)
        padding_changed = fresh(bits, known, torch.where(mask[..., None], states, 5.0), mask, uncaptioned)
        other_known = fresh(torch.where(known, 1 - bits, bits), known, states, mask, uncaptioned)
    assert torch.equal(logits, flipped), "the value passed at an unknown bit must not matter"
    assert torch.equal(logits[2], other_caption[2]) and not torch.equal(logits[:2], other_caption[:2])
    assert torch.allclose(logits, padding_changed, atol=1e-6), "padded caption tokens must not matter"
    assert not torch.equal(logits, other_known), "the known bits must matter"


@pytest.mark.parametrize("patch", [1, 2])
def test_a_token_holds_the_patch_x_patch_block_of_cells_in_the_cell_priors_order(patch):
    """Without the blocks (no attention between tokens) a known bit moves the logits of its own
    token's cells only: exactly the patch x patch block around it, every bit of those cells."""
    torch.manual_seed(0)
    model = EntropyModel(replace(tiny_model_config(), patch=patch)).eval()
    model.blocks = torch.nn.ModuleList()
    bits, _, states, mask, uncaptioned = inputs()
    known = torch.ones_like(bits, dtype=torch.bool)
    _, h, w = SHAPE
    with torch.no_grad():
        logits = model(bits, known, states, mask, uncaptioned)
        for y in range(h):
            for x in range(w):
                changed = bits.clone()
                changed[:, 1, y, x] ^= 1  # bit 1 of cell (y, x)
                moved = logits != model(changed, known, states, mask, uncaptioned)  # (B, C, h, w)
                block = torch.zeros(SHAPE, dtype=torch.bool)
                top, left = y // patch * patch, x // patch * patch
                block[:, top: top + patch, left: left + patch] = True
                assert torch.equal(moved, block.expand_as(moved)), (y, x)
    assert model.cell_in.in_features == patch**2 * 2 * SHAPE[0] and model.position.shape[0] == 16 // patch**2


def test_saved_files_load_back_and_the_model_id_is_the_weights_sha256(fresh, tmp_path):
    identity = save_entropy_model(fresh, tmp_path / "m")
    weights = (tmp_path / "m" / WEIGHTS_FILE).read_bytes()
    assert identity == hashlib.sha256(weights).hexdigest()[:8] == model_id(weights_bytes(fresh))
    loaded, loaded_id = load_entropy_model(tmp_path / "m")
    assert loaded_id == identity and loaded.config == fresh.config
    with torch.no_grad():
        assert torch.equal(loaded(*inputs()), fresh(*inputs()))
    assert save_entropy_model(loaded, tmp_path / "again") == identity  # the same weights, the same file


def test_a_model_saved_before_patch_existed_loads_as_patch_1_with_its_id(tmp_path):
    torch.manual_seed(0)
    model = EntropyModel(tiny_model_config()).eval()
    identity = save_entropy_model(model, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    del saved["config"]["patch"]
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps(saved))
    loaded, loaded_id = load_entropy_model(tmp_path / "m")
    assert loaded.config.patch == 1 and loaded_id == identity
    with torch.no_grad():
        assert torch.equal(loaded(*inputs()), model(*inputs()))


def test_a_missing_newer_or_foreign_model_is_refused_by_name(fresh, tmp_path):
    with pytest.raises(FileNotFoundError, match="kedro run --pipelines compression"):
        load_entropy_model(tmp_path / "none")
    save_entropy_model(fresh, tmp_path / "m")
    saved = json.loads((tmp_path / "m" / CONFIG_FILE).read_text())
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps({**saved, "version": 99}))
    with pytest.raises(ValueError, match="version 99.*kedro run --pipelines compression"):
        load_entropy_model(tmp_path / "m")
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps({**saved, "format": "something.else"}))
    with pytest.raises(ValueError, match="not a bitlatent entropy model"):
        load_entropy_model(tmp_path / "m")
    (tmp_path / "m" / CONFIG_FILE).write_text(json.dumps({**saved, "config": {**saved["config"], "width": 64}}))
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_entropy_model(tmp_path / "m")


def test_config_refuses_impossible_architectures():
    with pytest.raises(ValueError, match="not divisible"):
        EntropyModelConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="caption_dropout"):
        EntropyModelConfig(caption_dropout=1.0)
    with pytest.raises(ValueError, match="unknown compression.model parameter"):
        EntropyModelConfig.from_dict({"widht": 3})
    for patch in (0, 3, 2.0, True):
        with pytest.raises(ValueError, match=r"compression.model.patch .* must be a positive int dividing .* 8 x 8"):
            EntropyModelConfig(patch=patch)
    with pytest.raises(ValueError, match="dividing the latent grid 8 x 6"):
        EntropyModelConfig(latent_w=6, patch=4)
    assert EntropyModelConfig(latent_h=16, latent_w=16, patch=2).num_tokens == 64


def test_a_trained_model_codes_held_out_latents_below_raw_bits_and_better_given_captions(tiny_entropy):
    held_out, _ = structured_data(32, 1, tiny_entropy.patterns)  # other draws of the same patterns
    bits = held_out.latent_bits
    states, mask = held_out.features.padded()
    raw = float(np.prod(SHAPE))
    plain = ideal_bits(bits, torch_logits(tiny_entropy.model)).mean()
    captioned = ideal_bits(bits, torch_logits(tiny_entropy.model, states, mask)).mean()
    assert plain < 0.6 * raw, plain  # 4 patterns with 3% noise: about 15 bits is the floor
    assert captioned < 0.85 * plain, (captioned, plain)  # the caption names the pattern
    streams = compress_batch(bits, torch_logits(tiny_entropy.model, states, mask), 8, "000000aa")
    payload_bits = 8 * (np.array([len(s) for s in streams]) - HEADER_BYTES)
    assert payload_bits.mean() < 0.6 * raw
    assert payload_bits.mean() <= captioned + 32 + 8  # the range coder's last word, byte rounding
    decoded = decompress_batch(streams, torch_logits(tiny_entropy.model, states, mask), "000000aa")
    assert np.array_equal(decoded, bits)


def test_one_stream_of_a_batch_decodes_alone(tiny_entropy):
    """Torch's logits of a row do not depend on the other rows of the call here (CPU), so a file of
    streams coded together can be decoded one stream at a time."""
    bits = tiny_entropy.data.latent_bits[:9]
    streams = compress_batch(bits, torch_logits(tiny_entropy.model), 8, "000000aa")
    for i in (0, 4, 8):
        assert np.array_equal(decompress(streams[i], torch_logits(tiny_entropy.model), "000000aa"), bits[i])


def test_captioned_logits_refuse_another_number_of_latents(tiny_entropy):
    states, mask = tiny_entropy.data.features.padded(np.arange(3))
    logits_fn = torch_logits(tiny_entropy.model, states, mask)
    with pytest.raises(ValueError, match="holds 3 captions, it was asked for 2"):
        logits_fn(np.zeros((2, *SHAPE), np.uint8), np.zeros((2, *SHAPE), bool))
