import numpy as np
import pytest

from bitlatent.data.synthetic import SyntheticConfig, render_sample
from bitlatent.evaluation.generation_quality import (
    frechet_distance, latent_diversity, layout_diversity, scene_features, train_scene_features,
)


def test_latent_diversity_is_zero_for_equal_samples_and_counts_hamming_distance():
    rng = np.random.default_rng(0)
    same = np.repeat(rng.integers(0, 2, (3, 1, 4, 2, 2), dtype=np.uint8), 4, axis=1)  # (N=3, S=4, C, h, w)
    assert latent_diversity(same) == 0.0
    a = np.zeros((1, 2, 16), np.uint8)
    a[0, 1, :4] = 1  # 4 of 16 bits differ
    assert latent_diversity(a.reshape(1, 2, 16, 1, 1)) == pytest.approx(0.25)
    independent = rng.integers(0, 2, (5, 4, 8, 8, 8), dtype=np.uint8)
    assert latent_diversity(independent) == pytest.approx(0.5, abs=0.02)
    with pytest.raises(ValueError, match="2 samples"):
        latent_diversity(same[:, :1])


def _scenes(count: int, size: int = 32, start: int = 0):
    config = SyntheticConfig(num_pairs=start + count, image_size=size)
    samples = [render_sample(i, config) for i in range(start, start + count)]
    return np.stack([s[0] for s in samples]), [s[2] for s in samples]


def test_layout_diversity_tells_repeated_scenes_from_different_ones():
    images, _ = _scenes(8)
    repeated = np.repeat(images[:2, None], 3, axis=1)  # (2, 3, H, W, 3): the same scene three times
    assert layout_diversity(repeated) == 0.0
    different = images[:6].reshape(2, 3, *images.shape[1:])
    assert layout_diversity(different) > 0.5


def test_frechet_distance_is_zero_for_the_same_features_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 8))
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(a, a + 2.0) == pytest.approx(32.0, rel=0.05)  # |mu shift|^2 = 8 * 4


def test_scene_features_put_real_scenes_nearer_each_other_than_noise():
    images, attributes = _scenes(192)
    network = train_scene_features(images[:128], attributes[:128], epochs=3)
    real_a, real_b = scene_features(network, images[128:160]), scene_features(network, images[160:])
    noise = np.random.default_rng(0).integers(0, 256, images[128:160].shape, dtype=np.uint8)
    assert frechet_distance(real_a, real_b) < frechet_distance(scene_features(network, noise), real_b)
