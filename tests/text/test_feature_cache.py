"""The on-disk cache of caption features."""

import numpy as np
import pytest

from bitlatent.text.feature_cache import TextFeatureCache, caption_key


class CountingEncoder:
    """Wraps the real encoder and counts the captions it encodes."""

    def __init__(self, encoder):
        self.inner, self.info, self.encoded = encoder, encoder.info, []

    def encode(self, prompts, max_length, batch_size=128, progress=True):
        self.encoded.extend(prompts)
        return self.inner.encode(prompts, max_length, batch_size, progress)


def test_cache_round_trip_and_reuse(encoder, tmp_path):
    captions = ["a red circle", "a blue square at the top", "a red circle", "a green star", "a cat", "a dog on a mat"]
    counting = CountingEncoder(encoder)
    cache = TextFeatureCache(tmp_path / "cache", max_length=24, shard_size=2)
    first = cache.get(captions, counting, progress=False)
    assert sorted(counting.encoded) == sorted(set(captions))  # each distinct caption once
    assert cache.last_computed == 5 and len(list((tmp_path / "cache").glob("features-*.safetensors"))) == 3
    direct = encoder.encode(captions, max_length=24, progress=False)
    np.testing.assert_allclose(first.pooled.astype(np.float32), direct.pooled.astype(np.float32), atol=2e-3)
    assert np.array_equal(first.lengths, direct.lengths)
    assert np.array_equal(first.pooled[0], first.pooled[2])  # the duplicate gets the same row

    # a second call (a new cache object, as in a new run) computes nothing
    counting.encoded.clear()
    again = TextFeatureCache(tmp_path / "cache", max_length=24, shard_size=2)
    second = again.get(captions, counting, progress=False)
    assert counting.encoded == [] and again.last_computed == 0
    for name in ("tokens", "offsets", "pooled"):
        assert np.array_equal(getattr(first, name), getattr(second, name))
    assert np.array_equal(again.get(captions[::-1], None).pooled, first.pooled[::-1])  # no encoder needed

    # only new captions are encoded
    more = again.get(["a cat", "a brand new caption"], counting, progress=False)
    assert counting.encoded == ["a brand new caption"] and len(more) == 2 and len(again) == 6
    assert "a brand new caption" in again and caption_key("a cat") != caption_key("a cat ")

    with pytest.raises(KeyError):
        again.get(["never seen"], None)
    with pytest.raises(ValueError, match="other settings"):
        TextFeatureCache(tmp_path / "cache", max_length=32).get(["a red circle"], counting, progress=False)
