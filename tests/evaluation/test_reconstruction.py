import numpy as np

from bitlatent.evaluation.reconstruction import reconstruction_scores


def test_identical_images_score_perfectly_and_noise_lowers_every_score():
    rng = np.random.default_rng(0)
    originals = rng.integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    same = reconstruction_scores(originals, originals.copy())
    assert same["psnr"] == float("inf") and same["ssim"] > 0.999 and same["images"] == 4
    noisy = np.clip(originals.astype(int) + rng.integers(-20, 21, originals.shape), 0, 255).astype(np.uint8)
    scores = reconstruction_scores(originals, noisy)
    assert 15 < scores["psnr"] < 40 and scores["ssim"] < same["ssim"]
    assert abs(scores["psnr_mean_per_image"] - scores["psnr"]) < 1.0  # same noise level on every image
