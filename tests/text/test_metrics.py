import numpy as np
import pytest

from bitlatent.text.metrics import bit_accuracy, hamming_distances, majority_bit_accuracy, recall_at_k


def test_hamming_matches_brute_force():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 2, (7, 33), dtype=np.uint8)
    b = rng.integers(0, 2, (5, 33), dtype=np.uint8)
    d = hamming_distances(a, b, chunk=3)
    assert d.dtype == np.int32 and d.shape == (7, 5)
    assert np.array_equal(d, (a[:, None, :] != b[None, :, :]).sum(-1))
    # latents (n, C, h, w) are flattened
    assert np.array_equal(hamming_distances(a[:, :32].reshape(7, 2, 4, 4), b[:, :32].reshape(5, 2, 4, 4)),
                          (a[:, None, :32] != b[None, :, :32]).sum(-1))


def test_hamming_rejects_non_bits_and_length_mismatch():
    with pytest.raises(ValueError):
        hamming_distances(np.full((1, 4), 2, np.uint8), np.zeros((1, 4), np.uint8))
    with pytest.raises(ValueError):
        hamming_distances(np.zeros((1, 4), np.uint8), np.zeros((1, 5), np.uint8))


def test_recall_perfect_codes_and_several_captions_per_image():
    rng = np.random.default_rng(1)
    library = rng.integers(0, 2, (20, 64), dtype=np.uint8)
    ids = [f"img{i}" for i in range(20)]
    q_rows = np.array([0, 0, 3, 7, 7, 7, 19])  # several captions per image
    r = recall_at_k(library[q_rows], [ids[i] for i in q_rows], library, ids)
    assert r == {"t2i_recall@1": 1.0, "t2i_recall@5": 1.0, "t2i_recall@10": 1.0}


def test_recall_of_uninformative_codes_is_exactly_chance():
    library = np.zeros((50, 16), np.uint8)  # every image at the same distance: all ties
    queries = np.ones((10, 16), np.uint8)
    ids = np.arange(50)
    r = recall_at_k(queries, ids[:10], library, ids, ks=(1, 5, 10))
    assert r["t2i_recall@1"] == pytest.approx(1 / 50)
    assert r["t2i_recall@5"] == pytest.approx(5 / 50)
    assert r["t2i_recall@10"] == pytest.approx(10 / 50)


def test_recall_counts_closer_images():
    library = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], np.uint8)
    query = np.array([[0, 0, 0, 0]], np.uint8)  # true image 2 is third nearest
    r = recall_at_k(query, ["c"], library, ["a", "b", "c", "d"], ks=(1, 2, 3))
    assert r == {"t2i_recall@1": 0.0, "t2i_recall@2": 0.0, "t2i_recall@3": 1.0}


def test_recall_rejects_bad_ids():
    codes = np.zeros((2, 8), np.uint8)
    with pytest.raises(ValueError, match="unique"):
        recall_at_k(codes, ["a", "a"], codes, ["a", "a"])
    with pytest.raises(ValueError, match="not in the library"):
        recall_at_k(codes, ["a", "z"], codes, ["a", "b"])


def test_bit_accuracy_and_majority_baseline():
    t = np.array([[1, 1, 0, 0], [1, 0, 0, 1]], np.uint8)
    assert bit_accuracy(t, t) == 1.0
    assert bit_accuracy(1 - t, t) == 0.0
    assert bit_accuracy(np.zeros_like(t), t) == 0.5
    assert majority_bit_accuracy(t) == 0.75  # majority [1, (tie->1), 0, (tie->1)]
    with pytest.raises(ValueError):
        bit_accuracy(t, t[:1])
