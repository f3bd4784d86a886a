"""Tests of the Great Expectations chunk validator (bitlatent.data.validation)."""

from __future__ import annotations

import json
import math
import os
import socket
import time

import numpy as np
import pandas as pd
import pytest

from bitlatent.data.validation import (
    IMAGE_STATUS_CODES,
    REASON_CODES,
    REQUIRED_COLUMNS,
    ChunkValidator,
    ValidationLimits,
)

NAN = float("nan")
BAD_IMAGE = dict(width=NAN, height=NAN, pixel_std=NAN, pixel_mean=NAN)


def row(i: int = 0, **overrides) -> dict:
    """A row that passes every check with the default limits."""
    r = dict(
        sample_id=f"s{i}",
        caption=f"a red square number {i}",
        caption_chars=len(f"a red square number {i}"),
        seen_before=False,
        image_status="ok",
        width=64.0,
        height=48.0,
        pixel_std=0.2,
        pixel_mean=0.5,
    )
    r.update(overrides)
    if "caption" in overrides and "caption_chars" not in overrides:
        r["caption_chars"] = 0 if r["caption"] is None else len(r["caption"])
    return r


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=list(REQUIRED_COLUMNS))


@pytest.fixture
def validator() -> ChunkValidator:
    return ChunkValidator(ValidationLimits())


# ----------------------------------------------------------------------------- limits


def test_limits_defaults_and_from_dict():
    assert ValidationLimits() == ValidationLimits.from_dict({}) == ValidationLimits.from_dict(None)
    d = ValidationLimits().to_dict()
    assert d == {"caption_max_chars": 300, "min_image_side": 8, "max_image_side": 8192, "min_pixel_std": 0.01}
    lim = ValidationLimits.from_dict({"caption_max_chars": 20, "min_pixel_std": 0})
    assert lim.caption_max_chars == 20 and lim.min_pixel_std == 0.0 and lim.min_image_side == 8
    assert ValidationLimits.from_dict(lim.to_dict()) == lim


@pytest.mark.parametrize(
    "bad",
    [
        {"caption_max_char": 3},  # unknown key
        {"caption_max_chars": 0},
        {"caption_max_chars": 2.5},
        {"min_image_side": 0},
        {"min_image_side": 100, "max_image_side": 50},
        {"min_pixel_std": -0.1},
        {"min_pixel_std": float("nan")},
        {"max_image_side": True},
    ],
)
def test_limits_reject_bad_values(bad):
    with pytest.raises(ValueError):
        ValidationLimits.from_dict(bad)


# ----------------------------------------------------------------------------- per-row reasons


def test_good_rows_have_no_reasons(validator):
    reasons = validator.validate(frame([row(i) for i in range(5)]))
    assert reasons == [[], [], [], [], []]
    s = validator.summary()
    assert s["success"] is True and s["accepted_rows"] == 5 and s["rejected_rows"] == 0
    assert all(e["success"] and e["unexpected_count"] == 0 for e in s["expectations"])


CASES = [
    ({"seen_before": True}, ["duplicate_sample_id"]),
    ({"sample_id": None}, ["missing_sample_id"]),
    ({"caption": None}, ["missing_caption"]),  # caption_chars 0, but no "empty_caption" too
    ({"caption": ""}, ["empty_caption"]),
    ({"caption": "x" * 301}, ["caption_too_long"]),
    ({"caption": "x" * 300}, []),  # bounds are inclusive
    ({"caption": "x"}, []),
    ({"width": 7.0}, ["image_too_small"]),
    ({"height": 7.0}, ["image_too_small"]),
    ({"width": 7.0, "height": 2.0}, ["image_too_small"]),  # one code once
    ({"width": 8193.0}, ["image_too_large"]),
    ({"height": 10000.0}, ["image_too_large"]),
    ({"width": 4.0, "height": 9000.0}, ["image_too_small", "image_too_large"]),
    ({"width": 8.0, "height": 8192.0}, []),
    ({"pixel_std": 0.0}, ["constant_image"]),
    ({"pixel_std": 0.009}, ["constant_image"]),
    ({"pixel_std": 0.01}, []),
    *[({"image_status": code, **BAD_IMAGE}, [code]) for code in IMAGE_STATUS_CODES],
    (
        {"seen_before": True, "sample_id": None, "caption": "", "pixel_std": 0.0, "width": 5.0},
        ["duplicate_sample_id", "missing_sample_id", "empty_caption", "image_too_small", "constant_image"],
    ),
]


@pytest.mark.parametrize("overrides,expected", CASES, ids=[str(c[0])[:60] for c in CASES])
def test_each_reason_code_for_a_crafted_row(validator, overrides, expected):
    # the crafted row sits between good rows, so a wrong index mapping would show
    reasons = validator.validate(frame([row(0), row(1, **overrides), row(2)]))
    assert reasons == [[], expected, []]


def test_every_reason_code_is_reachable(validator):
    rows = [row(i, **o) for i, (o, _) in enumerate(CASES)]
    reasons = validator.validate(frame(rows))
    produced = {code for r in reasons for code in r}
    assert produced == set(REASON_CODES)


def test_undecodable_rows_get_only_their_status_even_with_sizes(validator):
    # NaN sizes/std are skipped by GX, and image checks only look at image_status == "ok" rows,
    # so an unreadable image never gets a spurious size or constant-image reason.
    rows = [
        row(0, image_status="missing_file", **BAD_IMAGE),
        row(1, image_status="truncated_image", width=NAN, height=NAN, pixel_std=NAN, pixel_mean=NAN),
        row(2, image_status="decompression_bomb", width=60000.0, height=60000.0, pixel_std=NAN, pixel_mean=NAN),
        row(3, image_status="not_an_image", width=NAN, height=3.0, pixel_std=0.0, pixel_mean=NAN),
        row(4),
    ]
    reasons = validator.validate(frame(rows))
    assert reasons == [["missing_file"], ["truncated_image"], ["decompression_bomb"], ["not_an_image"], []]
    by_name = {e["name"]: e for e in validator.summary()["expectations"]}
    for name in ("image_width_within_limits", "image_height_within_limits", "image_not_constant"):
        assert by_name[name]["success"] is True
        assert by_name[name]["unexpected_count"] == 0
        assert by_name[name]["element_count"] == 1  # GX's count after the row_condition
    assert by_name["image_decodable"]["unexpected_count"] == 4


def test_mixed_chunk_gives_exactly_the_expected_reasons(validator):
    rows = [
        row(0),
        row(1, seen_before=True),
        row(2, caption=None, image_status="path_escapes_root", **BAD_IMAGE),
        row(3, caption="y" * 500, width=20000.0),
        row(4),
        row(5, sample_id=None, pixel_std=0.0),
        row(6, caption="", seen_before=True, image_status="invalid_utf8", **BAD_IMAGE),
        row(7, height=1.0),
        row(8),
        row(9, image_status="malformed_row", sample_id=None, caption=None, **BAD_IMAGE),
    ]
    reasons = validator.validate(frame(rows))
    assert reasons == [
        [],
        ["duplicate_sample_id"],
        ["missing_caption", "path_escapes_root"],
        ["caption_too_long", "image_too_large"],
        [],
        ["missing_sample_id", "constant_image"],
        ["duplicate_sample_id", "empty_caption", "invalid_utf8"],
        ["image_too_small"],
        [],
        ["missing_sample_id", "missing_caption", "malformed_row"],
    ]


def test_reasons_follow_row_positions_not_index_labels(validator):
    df = frame([row(0), row(1, seen_before=True), row(2)])
    df.index = [20000, 20001, 20002]
    before = df.copy()
    assert validator.validate(df) == [[], ["duplicate_sample_id"], []]
    pd.testing.assert_frame_equal(df, before)  # the caller's chunk is not modified


def test_more_than_200_failures_all_reported(validator):
    # GX 1.x caps unexpected_list at 200 values even with COMPLETE; unexpected_index_list is not
    # capped, and every failing row must get its reason.
    n = 650
    rows = []
    for i in range(n):
        if i % 3 == 0:
            rows.append(row(i, caption="z" * 400))
        elif i % 3 == 1:
            rows.append(row(i, image_status=IMAGE_STATUS_CODES[i % len(IMAGE_STATUS_CODES)], **BAD_IMAGE))
        else:
            rows.append(row(i, width=2.0 if i % 2 else 9999.0))
    reasons = validator.validate(frame(rows))
    for i, r in enumerate(reasons):
        if i % 3 == 0:
            assert r == ["caption_too_long"], i
        elif i % 3 == 1:
            assert r == [IMAGE_STATUS_CODES[i % len(IMAGE_STATUS_CODES)]], i
        else:
            assert r == ["image_too_small" if i % 2 else "image_too_large"], i
    by_name = {e["name"]: e for e in validator.summary()["expectations"]}
    assert by_name["caption_length_within_limits"]["unexpected_count"] == len(range(0, n, 3)) > 200
    assert by_name["image_decodable"]["unexpected_count"] == len(range(1, n, 3)) > 200


def test_empty_chunk(validator):
    assert validator.validate(frame([])) == []
    assert validator.validate(pd.DataFrame([])) == []  # what pd.DataFrame(rows) gives for no rows
    assert validator.summary()["rows"] == 0


# ----------------------------------------------------------------------------- summary


def test_summary_counts_add_up_over_two_chunks(validator):
    chunk1 = [
        row(0),
        row(1, seen_before=True),
        row(2, image_status="missing_file", **BAD_IMAGE),
        row(3, caption=""),
        row(4, width=100.0, height=30.0, pixel_mean=0.25, pixel_std=0.1),
    ]
    chunk2 = [
        row(5, caption="q" * 301),
        row(6, image_status="empty_file", **BAD_IMAGE),
        row(7, width=20000.0, height=9.0),  # rejected: must not enter the image stats
        row(8, width=10.0, height=500.0, pixel_mean=0.75, pixel_std=0.3),
    ]
    r1 = validator.validate(frame(chunk1))
    r2 = validator.validate(frame(chunk2))
    s = validator.summary()
    json.dumps(s)  # JSON-serialisable

    assert s["chunks"] == 2 and s["rows"] == 9
    assert s["accepted_rows"] == sum(not r for r in r1 + r2) == 3
    assert s["rejected_rows"] == 6
    assert s["success"] is False
    assert s["rows_by_reason"] == {
        "caption_too_long": 1,
        "duplicate_sample_id": 1,
        "empty_caption": 1,
        "empty_file": 1,
        "image_too_large": 1,
        "missing_file": 1,
    }
    by_name = {e["name"]: e for e in s["expectations"]}
    assert list(by_name) == [
        "unique_sample_id",
        "sample_id_present",
        "caption_present",
        "caption_length_within_limits",
        "image_decodable",
        "image_width_within_limits",
        "image_height_within_limits",
        "image_not_constant",
    ]
    for e in s["expectations"]:
        assert e["chunks"] == 2
        assert e["unexpected_count"] == sum(e["reason_counts"].values())
        assert e["success"] == (e["unexpected_count"] == 0)
        assert (e["failed_chunks"] == 0) == e["success"]
    assert by_name["unique_sample_id"]["element_count"] == 9
    assert by_name["unique_sample_id"]["unexpected_count"] == 1
    assert by_name["unique_sample_id"]["failed_chunks"] == 1
    assert by_name["caption_length_within_limits"]["reason_counts"] == {"caption_too_long": 1, "empty_caption": 1}
    assert by_name["caption_length_within_limits"]["failed_chunks"] == 2
    assert by_name["image_decodable"]["reason_counts"] == {"empty_file": 1, "missing_file": 1}
    assert by_name["image_decodable"]["element_count"] == 9
    assert by_name["image_width_within_limits"]["element_count"] == 7  # "ok" rows only
    assert by_name["image_width_within_limits"]["reason_counts"] == {"image_too_large": 1}
    assert by_name["image_height_within_limits"]["success"] is True
    assert by_name["sample_id_present"]["success"] is True
    assert by_name["caption_present"]["success"] is True
    assert by_name["image_not_constant"]["success"] is True

    # image statistics over the three accepted rows: 0, 4, 8
    st = s["image_stats"]
    assert st["rows"] == 3
    assert st["pixel_mean_mean"] == pytest.approx((0.5 + 0.25 + 0.75) / 3)
    assert st["pixel_std_mean"] == pytest.approx((0.2 + 0.1 + 0.3) / 3)
    assert (st["width_min"], st["width_max"]) == (10.0, 100.0)
    assert (st["height_min"], st["height_max"]) == (30.0, 500.0)


def test_summary_before_any_chunk_and_with_no_accepted_rows(validator):
    s = validator.summary()
    assert s["rows"] == 0 and s["success"] is True and s["image_stats"]["pixel_mean_mean"] is None
    validator.validate(frame([row(0, image_status="missing_file", **BAD_IMAGE)]))
    st = validator.summary()["image_stats"]
    assert st["rows"] == 0 and st["width_min"] is None and st["pixel_std_mean"] is None


# ----------------------------------------------------------------------------- GX really decides


def test_summary_holds_gx_expectation_types_and_kwargs(validator):
    import great_expectations as gx

    s = validator.summary()
    assert s["great_expectations_version"] == gx.__version__
    assert s["great_expectations_version"].startswith("1.")
    types = {e["name"]: e["expectation_type"] for e in s["expectations"]}
    assert types == {
        "unique_sample_id": "expect_column_values_to_be_in_set",
        "sample_id_present": "expect_column_values_to_not_be_null",
        "caption_present": "expect_column_values_to_not_be_null",
        "caption_length_within_limits": "expect_column_values_to_be_between",
        "image_decodable": "expect_column_values_to_be_in_set",
        "image_width_within_limits": "expect_column_values_to_be_between",
        "image_height_within_limits": "expect_column_values_to_be_between",
        "image_not_constant": "expect_column_values_to_be_between",
    }
    kw = {e["name"]: e["kwargs"] for e in s["expectations"]}
    assert kw["unique_sample_id"] == {"column": "seen_before", "value_set": [False]}
    assert kw["caption_length_within_limits"]["max_value"] == 300
    assert kw["image_width_within_limits"]["row_condition"]["parameter"] == "ok"
    assert kw["image_not_constant"]["min_value"] == pytest.approx(0.01)
    assert isinstance(validator.suite, gx.ExpectationSuite)
    assert len(validator.suite.expectations) == 8


def test_outcome_follows_the_gx_suite(validator):
    # Changing the expectation inside the GX suite changes the per-row outcome:
    # the reasons come from GX's results, not from a pandas re-implementation.
    chunk = frame([row(0, caption="abcdefghij"), row(1, caption="abc")])
    assert validator.validate(chunk) == [[], []]
    (caption_len,) = [e for e in validator.suite.expectations if e.column == "caption_chars"]
    caption_len.max_value = 5
    assert validator.validate(chunk) == [["caption_too_long"], []]


def test_one_gx_suite_validation_per_chunk(monkeypatch, validator):
    from great_expectations.datasource.fluent.interfaces import Batch

    calls = []
    original = Batch.validate

    def spy(self, expect, **kwargs):
        calls.append((expect, kwargs.get("result_format")))
        return original(self, expect, **kwargs)

    monkeypatch.setattr(Batch, "validate", spy)
    validator.validate(frame([row(0), row(1, seen_before=True)]))
    validator.validate(frame([row(2)]))
    assert len(calls) == 2
    assert all(expect is validator.suite for expect, _ in calls)
    assert all(rf["result_format"] == "COMPLETE" for _, rf in calls)


def test_custom_limits_are_used():
    v = ChunkValidator(ValidationLimits(caption_max_chars=5, min_image_side=50, max_image_side=60, min_pixel_std=0.5))
    reasons = v.validate(frame([row(0, caption="abcdef", width=55.0, height=55.0, pixel_std=0.6), row(1)]))
    # row 1: caption is 20 chars, width 64 > 60, height 48 < 50, std 0.2 < 0.5
    assert reasons == [["caption_too_long"], ["caption_too_long", "image_too_large", "image_too_small", "constant_image"]]


# ----------------------------------------------------------------------------- contract errors


def test_missing_column_is_an_error(validator):
    df = frame([row(0)]).drop(columns=["pixel_std"])
    with pytest.raises(ValueError, match="pixel_std"):
        validator.validate(df)
    with pytest.raises(TypeError):
        validator.validate([row(0)])


@pytest.mark.parametrize(
    "overrides",
    [{"image_status": None}, {"seen_before": None}, {"width": NAN}, {"pixel_std": NAN}],
)
def test_nulls_gx_would_skip_are_an_error(validator, overrides):
    df = frame([row(0), row(1, **overrides)])
    with pytest.raises(ValueError):
        validator.validate(df)


def test_exception_inside_gx_is_raised(validator):
    df = frame([row(0), row(1)])
    df["width"] = ["wide", "narrow"]  # GX catches the TypeError and reports it in the result
    with pytest.raises(RuntimeError, match="failed to evaluate 'image_width_within_limits'"):
        validator.validate(df)


# ----------------------------------------------------------------------------- offline, timing


def test_offline_and_analytics_off(monkeypatch):
    assert os.environ.get("GX_ANALYTICS_ENABLED") == "false"

    def no_network(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    v = ChunkValidator(ValidationLimits())
    assert type(v._context).__name__ == "EphemeralDataContext"
    assert v._context.variables.config.analytics_enabled is False
    assert v.validate(frame([row(0), row(1, sample_id=None)])) == [[], ["missing_sample_id"]]


def test_10k_row_chunk_is_fast_enough(validator):
    rng = np.random.default_rng(0)
    n = 10_000
    df = frame([row(i) for i in range(n)])
    bad = rng.choice(n, size=300, replace=False)
    df.loc[bad, "seen_before"] = True
    validator.validate(df.iloc[:10])  # warm-up
    t = time.perf_counter()
    reasons = validator.validate(df)
    elapsed = time.perf_counter() - t
    assert sorted(i for i, r in enumerate(reasons) if r) == sorted(bad.tolist())
    assert all(r == ["duplicate_sample_id"] for r in (reasons[i] for i in bad))
    assert elapsed < 10.0, f"{elapsed:.2f}s for {n} rows"
    assert math.isfinite(validator.summary()["ge_seconds"])
