import json

import pytest
import torch

from bitlatent.core.decoder import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    BinaryLatentDecoder,
    DecoderConfig,
    load_decoder,
    save_decoder,
)

TINY = DecoderConfig(image_size=16, latent_h=4, latent_w=4, bits_per_cell=4, widths=(16, 8, 8), blocks_per_stage=(1, 1, 0))


def _random_decoder(cfg: DecoderConfig, seed: int = 0) -> BinaryLatentDecoder:
    """A float64 decoder with every conv random (residual branches are zero at init)."""
    torch.manual_seed(seed)
    dec = BinaryLatentDecoder(cfg).double()
    for m in dec.modules():
        if isinstance(m, torch.nn.Conv2d):
            m.reset_parameters()
    return dec.eval()


def _signs(n, cfg, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, cfg.bits_per_cell, cfg.latent_h, cfg.latent_w), generator=g).double() * 2 - 1


def test_shapes_and_range():
    dec = BinaryLatentDecoder(TINY)
    out = dec(_signs(3, TINY).float())
    assert out.shape == (3, 3, 16, 16)
    assert out.min() >= 0 and out.max() <= 1
    default = BinaryLatentDecoder(DecoderConfig())
    assert default(torch.ones(1, 8, 16, 16)).shape == (1, 3, 64, 64)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_locality_probe(kernel_size):
    """Flip one latent cell: pixels outside its analytic influence box are unchanged, and the
    pixels that do change fill exactly that box (so the analysis is tight, not just an upper bound)."""
    cfg = DecoderConfig(image_size=48, latent_h=12, latent_w=12, bits_per_cell=3, widths=(8, 8, 8),
                        blocks_per_stage=(1, 1, 1), kernel_size=kernel_size)  # fmt: skip
    dec = _random_decoder(cfg)
    z = _signs(1, cfg)
    cells = [(0, 0), (5, 7), (11, 3), (6, 11)]
    probes = z.repeat(len(cells), 1, 1, 1)
    for k, (i, j) in enumerate(cells):
        probes[k, :, i, j] *= -1  # flip all bits of cell (i, j)
    with torch.no_grad():
        base, flipped = dec(z), dec(probes)
    for k, (i, j) in enumerate(cells):
        changed = (flipped[k] - base[0]).abs().amax(0)  # (H, W)
        y0, y1, x0, x1 = dec.influence_box(i, j)
        outside = changed.clone()
        outside[y0:y1, x0:x1] = 0
        assert outside.max().item() <= 1e-12, f"cell {(i, j)} changed pixels outside its receptive field"
        ys, xs = torch.nonzero(changed > 1e-12, as_tuple=True)
        assert len(ys) > 0
        assert (ys.min().item(), ys.max().item() + 1, xs.min().item(), xs.max().item() + 1) == (y0, y1, x0, x1)


def test_receptive_field_cells_matches_measurement():
    cfg = DecoderConfig(image_size=48, latent_h=12, latent_w=12, bits_per_cell=2, widths=(8, 8, 8), blocks_per_stage=(1, 1, 1))
    dec = _random_decoder(cfg, seed=1)
    assert dec.receptive_field_cells() <= 8  # leaves room for unclipped windows on a 12-cell grid
    z = _signs(1, cfg, seed=1)
    probes = z.repeat(cfg.latent_h * cfg.latent_w, 1, 1, 1)
    for k in range(cfg.latent_h * cfg.latent_w):
        probes[k, :, k // cfg.latent_w, k % cfg.latent_w] *= -1
    with torch.no_grad():
        changed = (dec(probes) - dec(z)).abs().amax(1) > 1e-12  # (cells, H, W): does cell k change pixel?
    affects = changed.view(cfg.latent_h, cfg.latent_w, 48, 48)
    widest = 0
    for p in range(48):  # rows: which latent rows influence pixel row p (column 24)
        rows = torch.nonzero(affects[:, :, p, 24].any(1)).flatten()
        if rows.min() > 0 and rows.max() < cfg.latent_h - 1:  # not clipped by the border
            widest = max(widest, int(rows.max() - rows.min() + 1))
    assert widest == dec.receptive_field_cells()
    assert 1 < widest < cfg.latent_h


def test_default_receptive_field_is_bounded():
    rf = BinaryLatentDecoder(DecoderConfig()).receptive_field_cells()
    assert 1 < rf < 16
    wider = BinaryLatentDecoder(DecoderConfig(kernel_size=5)).receptive_field_cells()
    assert wider > rf  # the kernel size sets how many cells a pixel sees


def test_save_load_round_trip(tmp_path):
    dec = _random_decoder(TINY).float()
    save_decoder(dec, tmp_path / "dec", extra={"note": "test"})
    assert (tmp_path / "dec" / WEIGHTS_FILE).exists()
    meta = json.loads((tmp_path / "dec" / CONFIG_FILE).read_text())
    assert meta["config"] == TINY.to_dict()
    assert meta["num_parameters"] == dec.num_parameters()
    assert meta["receptive_field_cells"] == dec.receptive_field_cells()
    assert meta["latent_spec"]["bits_per_cell"] == 4 and meta["extra"] == {"note": "test"}
    raw = (tmp_path / "dec" / WEIGHTS_FILE).read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    assert raw[8:9] == b"{" and json.loads(raw[8 : 8 + header_len])  # safetensors, not pickle
    loaded = load_decoder(tmp_path / "dec")
    assert loaded.config == TINY
    z = _signs(2, TINY).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded(z), dec(z), rtol=0, atol=0)
    assert [p.name for p in tmp_path.joinpath("dec").iterdir()] and not list(tmp_path.joinpath("dec").glob("*.tmp"))


def test_a_decoder_saved_with_retired_keys_loads_or_names_the_command_that_retrains_it(tmp_path):
    dec = _random_decoder(TINY).float()
    save_decoder(dec, tmp_path / "old")
    meta_path = tmp_path / "old" / CONFIG_FILE
    meta = json.loads(meta_path.read_text())
    meta["config"].update(upsample="pixelshuffle", activation="silu", out_channels=3)  # as written before
    meta_path.write_text(json.dumps(meta))
    z = _signs(2, TINY).float()
    with torch.no_grad():
        torch.testing.assert_close(load_decoder(tmp_path / "old")(z), dec(z), rtol=0, atol=0)
    meta["config"]["upsample"] = "nearest"  # an architecture this code no longer builds
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"upsample was removed.*`kedro run --pipeline decoder_pretraining`"):
        load_decoder(tmp_path / "old")


def test_config_validation_and_dict():
    assert DecoderConfig.from_dict(TINY.to_dict()) == TINY
    assert json.loads(json.dumps(TINY.to_dict()))["widths"] == [16, 8, 8]
    with pytest.raises(ValueError):
        DecoderConfig(image_size=48, latent_h=16, latent_w=16)  # factor 3
    with pytest.raises(ValueError):
        DecoderConfig(widths=(64, 32))  # 16 -> 64 needs three stages
    with pytest.raises(ValueError):
        DecoderConfig(kernel_size=4)
    with pytest.raises(ValueError):
        DecoderConfig.from_dict({"nope": 1})
    assert DecoderConfig().latent_spec().bits_per_image == 2048
