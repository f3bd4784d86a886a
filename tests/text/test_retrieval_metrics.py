import numpy as np
import pytest

from bitlatent.text.retrieval_metrics import bit_accuracy, majority_bit_accuracy, recall_at_k


def test_recall_perfect_codes_and_several_captions_per_image():
    rng = np.random.default_rng(1)
    library = rng.integers(0, 2, (20, 64), dtype=np.uint8)
    ids = [f"img{i}" for i in range(20)]
    q_rows = np.array([0, 0, 3, 7, 7, 7, 19])  # several captions per image
    r = recall_at_k(library[q_rows], [ids[i] for i in q_rows], library, ids)
    assert r == {"t2i_recall@1": 1.0, "t2i_recall@5": 1.0, "t2i_recall@10": 1.0, "t2i_median_rank": 1.0}


def test_recall_of_uninformative_codes_is_exactly_chance():
    library = np.zeros((50, 16), np.uint8)  # every image at the same distance: all ties
    queries = np.ones((10, 16), np.uint8)
    ids = np.arange(50)
    r = recall_at_k(queries, ids[:10], library, ids, ks=(1, 5, 10))
    assert r["t2i_recall@1"] == pytest.approx(1 / 50)
    assert r["t2i_recall@5"] == pytest.approx(5 / 50)
    assert r["t2i_recall@10"] == pytest.approx(10 / 50)
    assert r["t2i_median_rank"] == pytest.approx(25.5)  # the expected rank among 50 tied images


def test_recall_counts_closer_images():
    library = np.array([[0, 0, 0, 0], [1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 1]], np.uint8)
    query = np.array([[0, 0, 0, 0]], np.uint8)  # true image 2 is third nearest
    r = recall_at_k(query, ["c"], library, ["a", "b", "c", "d"], ks=(1, 2, 3))
    assert r == {"t2i_recall@1": 0.0, "t2i_recall@2": 0.0, "t2i_recall@3": 1.0, "t2i_median_rank": 3.0}


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
