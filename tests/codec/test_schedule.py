"""bitlatent.codec.schedule: the stage of each bit, a fixed part of the stream format."""

from __future__ import annotations

import math
import zlib

import numpy as np
import pytest

from bitlatent.codec.schedule import coding_stages, stage_sizes

# CRC32 of coding_stages((8, 8, 8), 8) as little-endian int64, as format version 1 defines it.
PINNED_8x8x8 = 3334698364
SHAPES = [(8, 8, 8), (8, 16, 16), (16, 8, 8), (4, 16, 16), (16, 64, 64), (1, 1, 3)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("stages", [1, 3, 8])
def test_every_bit_has_one_stage_and_every_stage_some_bits(shape, stages):
    stages = min(stages, math.prod(shape))
    stage = coding_stages(shape, stages)
    assert stage.shape == shape and stage.dtype == np.int64
    counts = np.bincount(stage.ravel(), minlength=stages)
    assert len(counts) == stages and counts.min() >= 1 and counts.sum() == math.prod(shape)
    assert (counts == stage_sizes(math.prod(shape), stages)).all()


def test_the_cosine_schedule_starts_small_and_grows():
    sizes = stage_sizes(2048, 8)  # (8, 16, 16)
    assert sizes.sum() == 2048
    assert (np.diff(sizes) > 0).all(), sizes
    assert sizes[0] < 2048 * 0.03, "stage 0, coded with nothing known, should be small"
    assert sizes[-1] > 2048 * 0.15


def test_as_many_stages_as_bits_codes_one_bit_a_stage():
    stage = coding_stages((2, 2, 3), 12)
    assert sorted(stage.ravel().tolist()) == list(range(12))


def test_each_stage_is_spread_over_channels_and_cells():
    stage = coding_stages((8, 16, 16), 8)
    first = np.argwhere(stage == 0)  # (k, 3) of (c, y, x)
    assert len(np.unique(first[:, 0])) == 8, "stage 0 should touch every channel"
    assert len(np.unique(first[:, 1])) >= 12 and len(np.unique(first[:, 2])) >= 12


def test_the_pattern_is_pinned():
    # The pattern is part of stream format version 1: if this fails, the schedule changed and old streams
    # no longer decode; bump header.FORMAT_VERSION (and keep reading version 1) rather than the constant.
    assert zlib.crc32(coding_stages((8, 8, 8), 8).astype("<i8").tobytes()) == PINNED_8x8x8


@pytest.mark.parametrize("stages", [0, 513])
def test_impossible_stage_counts_are_refused(stages):
    with pytest.raises(ValueError, match="stages must be in"):
        coding_stages((8, 8, 8), stages)


def test_a_shape_that_is_not_c_h_w_is_refused():
    with pytest.raises(ValueError, match="latent_shape"):
        coding_stages((8, 8), 2)
