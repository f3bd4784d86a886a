"""``bitlatent.generation``: the modes, per-bit sampling, refine, Hamming search and the cell-prior
draws that the torch and the ONNX paths share (their agreement end to end:
tests/inference/test_generator.py)."""

import subprocess
import sys

import numpy as np
import pytest

from bitlatent.generation import (
    MODES, Prediction, cell_bits, cell_uniforms, cell_values, cells_to_redraw, code_signs, default_temperature,
    draw_cells, generate_bits, hamming_distances, nearest, prompt_keys, refine_bits, sample_bits, sample_cells,
)


def test_importing_it_imports_no_torch():
    code = "import sys, bitlatent.generation; assert not [m for m in sys.modules if m.startswith('torch')]"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]


# ----------------------------------------------------------------------------- Hamming search


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


def test_nearest_first_ties_to_lower_index():
    library = np.array([[1, 1, 1, 1], [0, 0, 0, 1], [0, 0, 0, 0], [0, 0, 1, 0]], np.uint8)
    query = np.array([[0, 0, 0, 0], [1, 1, 1, 0]], np.uint8)
    rows = nearest(query, code_signs(library), k=3)
    assert rows.dtype == np.int64 and rows.shape == (2, 3)
    assert rows[0].tolist() == [2, 1, 3]  # 1 and 3 tie at distance 1: lower index first
    assert rows[1].tolist() == [0, 3, 2]  # distances 1, 2, 3
    with pytest.raises(ValueError):
        nearest(query, code_signs(library), k=5)


# ----------------------------------------------------------------------------- per-bit latents


def test_sample_bits_argmax_seed_and_temperature():
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 4, 8, 8)).astype(np.float32) * 2
    argmax = (logits >= 0).astype(np.uint8)
    s0 = sample_bits(logits, temperature=0.0, samples=2)
    assert s0.shape == (3, 2, 4, 8, 8) and s0.dtype == np.uint8
    assert np.array_equal(s0[:, 0], argmax) and np.array_equal(s0[:, 1], argmax)
    a = sample_bits(logits, temperature=1.0, seed=7, samples=3)
    assert np.array_equal(a, sample_bits(logits, temperature=1.0, seed=7, samples=3))  # same seed, same bits
    assert not np.array_equal(a, sample_bits(logits, temperature=1.0, seed=8, samples=3))
    assert not np.array_equal(a[:, 0], a[:, 1])  # samples differ from each other
    # a prompt's samples do not depend on the other prompts of the call
    assert np.array_equal(sample_bits(logits[1:2], 1.0, seed=7, samples=3)[0], a[1])
    # higher temperature: more bits against the argmax
    flips = [np.mean(sample_bits(logits, t, seed=1, samples=4) != argmax[:, None]) for t in (0.0, 0.3, 1.0, 3.0)]
    assert flips[0] == 0 and flips[0] < flips[1] < flips[2] < flips[3] < 0.5
    with pytest.raises(ValueError):
        sample_bits(logits, temperature=-1)


def test_sampling_rate_follows_the_temperature():
    logits = np.full((1, 4, 8, 8), 1.0, np.float32)
    cold = sample_bits(logits, 0.05, seed=0, samples=50).mean()
    warm = sample_bits(logits, 5.0, seed=0, samples=50).mean()
    assert cold > 0.99 and 0.45 < warm < 0.65  # sigmoid(1/0.05) ~ 1, sigmoid(0.2) ~ 0.55


def test_refine_interpolates_by_confidence():
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    target = (logits >= 0).astype(np.uint8)
    start = rng.integers(0, 2, logits.shape, dtype=np.uint8)
    assert np.array_equal(refine_bits(start, logits, 0.0), start)
    assert np.array_equal(refine_bits(start, logits, 1.0), target)
    half = refine_bits(start, logits, 0.5)
    for i in range(2):
        disagree = start[i] != target[i]
        flipped = half[i] != start[i]
        assert flipped.sum() == round(0.5 * disagree.sum())
        assert not (flipped & ~disagree).any()  # only disagreeing bits move, toward the target
        assert np.array_equal(half[i][flipped], target[i][flipped])
        # the flipped bits are the most confident disagreements
        assert np.abs(logits[i])[flipped].min() >= np.abs(logits[i])[disagree & ~flipped].max()
    # monotone in strength
    d = [np.sum(refine_bits(start, logits, s) != target) for s in (0.0, 0.25, 0.5, 0.75, 1.0)]
    assert d == sorted(d, reverse=True) and d[-1] == 0
    with pytest.raises(ValueError):
        refine_bits(start, logits, 1.5)


def test_default_temperature_samples_only_from_a_cell_prior():
    assert [default_temperature(m, True) for m in ("generate", "refine", "retrieve")] == [1.0, 1.0, 0.0]
    assert [default_temperature(m, False) for m in ("generate", "refine", "retrieve")] == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- the modes


def test_modes_without_a_prior():
    rng = np.random.default_rng(0)
    prediction = Prediction(rng.standard_normal((2, 3, 4, 4)).astype(np.float32), rng.integers(0, 2, (2, 8), np.uint8))
    library = rng.integers(0, 2, (6, 3, 4, 4), dtype=np.uint8)
    codes = rng.integers(0, 2, (6, 8), dtype=np.uint8)
    kw = dict(samples=2, temperature=1.0, seed=3, library_signs=code_signs(codes), library_latents=lambda rows: library[rows])
    assert MODES == ("generate", "retrieve", "refine")
    drawn = generate_bits("generate", prediction, **kw)
    assert drawn.prompt_index.tolist() == [0, 0, 1, 1] and drawn.library_index is None and drawn.truncated is None
    np.testing.assert_array_equal(drawn.bits, sample_bits(prediction.bit_logits, 1.0, 3, 2).reshape(4, 3, 4, 4))
    found = generate_bits("retrieve", prediction, **kw)
    np.testing.assert_array_equal(found.library_index, nearest(prediction.code_bits, code_signs(codes), 2).reshape(-1))
    np.testing.assert_array_equal(found.bits, library[found.library_index])
    np.testing.assert_array_equal(generate_bits("refine", prediction, strength=0.0, **kw).bits, found.bits)
    np.testing.assert_array_equal(generate_bits("refine", prediction, strength=1.0, **kw).bits, drawn.bits)
    with pytest.raises(ValueError, match="library"):
        generate_bits("retrieve", prediction)
    with pytest.raises(ValueError, match="unknown mode"):
        generate_bits("dream", prediction)
    with pytest.raises(ValueError, match="samples"):
        generate_bits("generate", prediction, samples=0)


def test_modes_hand_the_cell_prior_its_start():
    prediction = Prediction(np.zeros((2, 1, 2, 2), np.float32), np.eye(2, dtype=np.uint8))
    library = np.arange(2 * 4, dtype=np.uint8).reshape(2, 1, 2, 2) % 2
    calls = []

    def draw_prior(start, strength):
        calls.append((None if start is None else start.copy(), strength))
        return np.ones((2, 1, 2, 2), np.uint8)

    kw = dict(library_signs=code_signs(np.eye(2)), library_latents=lambda rows: library[rows], draw_prior=draw_prior)
    assert generate_bits("generate", prediction, **kw).bits.all() and calls[-1] == (None, 1.0)
    refined = generate_bits("refine", prediction, strength=0.3, **kw)
    assert refined.bits.all() and refined.library_index.tolist() == [0, 1]
    np.testing.assert_array_equal(calls[-1][0], library)
    assert calls[-1][1] == 0.3
    np.testing.assert_array_equal(generate_bits("retrieve", prediction, **kw).bits, library)  # retrieve: no draw
    assert len(calls) == 2


# ----------------------------------------------------------------------------- cell-prior draws


def test_cell_values_and_bits_are_inverse_bit_0_most_significant():
    cells = np.random.default_rng(0).integers(0, 2, (5, 7, 6), dtype=np.uint8)
    values = cell_values(cells)
    np.testing.assert_array_equal(cell_bits(values, 6), cells)
    assert cell_values(np.array([[1, 0, 1], [0, 0, 1]])).tolist() == [5, 1]
    np.testing.assert_array_equal(cell_values(cell_bits(np.arange(256), 8)), np.arange(256))


def test_draws_invert_the_cdf():
    logits = np.log(np.array([[0.1, 0.2, 0.7]] * 4))
    np.testing.assert_array_equal(draw_cells(logits, 1.0, np.array([0.05, 0.15, 0.5, 0.999])), [0, 1, 2, 2])
    np.testing.assert_array_equal(draw_cells(logits, 0.0, np.zeros(4)), [2, 2, 2, 2])


def test_cells_to_redraw_marks_the_least_likely_fraction():
    scores = np.array([[-1.0, -5.0, -0.1, -3.0], [-2.0, -2.0, -2.0, -2.0]])
    assert cells_to_redraw(scores, 0.5).tolist() == [[False, True, False, True], [True, True, False, False]]  # ties: lower index
    assert not cells_to_redraw(scores, 0.0).any() and cells_to_redraw(scores, 1.0).all()
    with pytest.raises(ValueError, match="strength"):
        cells_to_redraw(scores, 1.5)


def test_uniforms_are_keyed_by_seed_sample_and_prompt():
    ids = np.array([[101, 7, 102, 0], [101, 7, 102, 5]])
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 0]])
    keys = prompt_keys(ids, mask)
    assert keys.dtype == np.uint32 and keys[0] == keys[1]  # padding ignored
    assert prompt_keys(ids[:, :2], mask[:, :2])[0] != keys[0]
    u = cell_uniforms(3, 2, np.array([keys[0], 9]), 5)  # (2 prompts * 2 samples, 5), prompt-major
    assert u.shape == (4, 5) and ((0 <= u) & (u < 1)).all()
    np.testing.assert_array_equal(u[2:], cell_uniforms(3, 2, np.array([9]), 5))  # a prompt's rows ignore the others
    assert len({row.tobytes() for row in u}) == 4
    assert not np.array_equal(u, cell_uniforms(4, 2, np.array([keys[0], 9]), 5))


def test_sample_cells_draws_in_order_and_keeps_what_it_is_told():
    seen = []

    def step(t, previous):  # cell t prefers value (previous value + 1) mod 4, strongly
        seen.append(previous.copy())
        logits = np.full((2, 4), -20.0, np.float32)
        logits[np.arange(2), (cell_values(previous) + 1) % 4] = 0.0
        return logits

    cells = sample_cells(step, 2, 2, 5, 1.0, np.full((2, 5), 0.5))
    assert cell_values(cells).tolist() == [[1, 2, 3, 0, 1]] * 2 and (seen[0] == 0).all()
    keep = (np.full((2, 5), 3), np.array([[False, True, False, False, False]] * 2))
    assert cell_values(sample_cells(step, 2, 2, 5, 0.0, None, keep)).tolist() == [[1, 3, 0, 1, 2]] * 2
    with pytest.raises(ValueError, match="uniforms"):
        sample_cells(step, 2, 2, 5, 1.0, None)
