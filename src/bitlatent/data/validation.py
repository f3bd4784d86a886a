"""Row validation of ingested (image, caption) chunks with Great Expectations (GX Core 1.x).

The ingest streams rows in chunks and calls ``ChunkValidator.validate`` once per chunk with a
pandas DataFrame of per-row facts (see ``REQUIRED_COLUMNS``). Every check is a Great Expectations
expectation in one ``ExpectationSuite`` built once, in an *ephemeral* (in-memory, offline) data
context, and reused for every chunk. GX is the source of truth for which rows fail: the failing
row positions come from GX's own ``unexpected_index_list`` (result format ``COMPLETE``), never
from re-implementing a check in pandas. The only thing done outside GX is choosing, for the two
"between" checks with two reason codes, which side of the range GX's reported unexpected value
lies on (``empty_caption`` vs ``caption_too_long``, ``image_too_small`` vs ``image_too_large``).

Checks, in the order a row's reasons are listed (each reason at most once per row):

===============================  ===========================================  =======================
check                            GX expectation                               reason code(s)
===============================  ===========================================  =======================
unique_sample_id                 seen_before in set [False]                   duplicate_sample_id
sample_id_present                sample_id not null                           missing_sample_id
caption_present                  caption not null                             missing_caption
caption_length_within_limits     1 <= caption_chars <= caption_max_chars,     empty_caption /
                                 only where caption is not null               caption_too_long
image_decodable                  image_status in set ["ok"]                   the row's image_status
image_width_within_limits        min_image_side <= width <= max_image_side,   image_too_small /
                                 only where image_status == "ok"              image_too_large
image_height_within_limits       same for height                              same
image_not_constant               pixel_std >= min_pixel_std,                  constant_image
                                 only where image_status == "ok"
===============================  ===========================================  =======================

Null handling: GX column-map expectations skip null/NaN values (they count as ``missing_count``,
never as unexpected), and on top of that the image checks carry a GX ``row_condition``
(``image_status == "ok"``), so a row whose image could not be read gets its ``image_status`` code
and nothing else. A missing caption gets ``missing_caption`` only, not also ``empty_caption``.
``mostly`` is left at its default 1.0, so an expectation's chunk ``success`` is False as soon as
one row fails it; per-row reasons do not depend on ``mostly``.

Inputs that break the contract (a missing column, a null ``image_status`` / ``seen_before`` /
``caption_chars``, an "ok" row without width/height/pixel_std) raise ``ValueError`` instead of
being silently accepted: GX skips nulls, so such rows would otherwise pass every check. An
exception inside GX (which GX reports in the result instead of raising) raises ``RuntimeError``.

Analytics: ``GX_ANALYTICS_ENABLED`` is set to ``false`` before ``great_expectations`` is imported
and the context is created with ``analytics_enabled=False``. (GX Core 1.24.1 ships no analytics
client at all; both switches are kept for older/newer 1.x releases.) Progress bars are off.
"""

from __future__ import annotations

import os

# Must happen before great_expectations is imported anywhere in this process.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

import math  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import asdict, dataclass, field, fields  # noqa: E402
from typing import Any, Callable, Mapping  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import Column  # noqa: E402

__all__ = [
    "ChunkValidator",
    "IMAGE_STATUS_CODES",
    "REASON_CODES",
    "REQUIRED_COLUMNS",
    "ValidationLimits",
]

# ----------------------------------------------------------------------------- reason codes

DUPLICATE_SAMPLE_ID = "duplicate_sample_id"
MISSING_SAMPLE_ID = "missing_sample_id"
MISSING_CAPTION = "missing_caption"
EMPTY_CAPTION = "empty_caption"
CAPTION_TOO_LONG = "caption_too_long"
IMAGE_TOO_SMALL = "image_too_small"
IMAGE_TOO_LARGE = "image_too_large"
CONSTANT_IMAGE = "constant_image"

#: Problem codes the ingest may put in ``image_status``; a failing row's reason is its own status.
IMAGE_STATUS_CODES: tuple[str, ...] = (
    "missing_file",
    "empty_file",
    "not_an_image",
    "truncated_image",
    "decompression_bomb",
    "path_escapes_root",
    "invalid_utf8",
    "malformed_row",
    "missing_image_field",
)

REASON_CODES: tuple[str, ...] = (
    DUPLICATE_SAMPLE_ID,
    MISSING_SAMPLE_ID,
    MISSING_CAPTION,
    EMPTY_CAPTION,
    CAPTION_TOO_LONG,
    *IMAGE_STATUS_CODES,
    IMAGE_TOO_SMALL,
    IMAGE_TOO_LARGE,
    CONSTANT_IMAGE,
)

IMAGE_OK = "ok"

REQUIRED_COLUMNS: tuple[str, ...] = (
    "sample_id",
    "caption",
    "caption_chars",
    "seen_before",
    "image_status",
    "width",
    "height",
    "pixel_std",
    "pixel_mean",
)

# Full per-row failure lists; the unexpected_index_query string is not needed (it is a long
# "df.filter(items=[...])" string) so it is not built.
_RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}


# ----------------------------------------------------------------------------- limits


@dataclass
class ValidationLimits:
    """Thresholds of the row checks. All bounds are inclusive."""

    #: Longest accepted caption, in characters (after stripping). Longer -> ``caption_too_long``.
    #: A caption of 0 characters is always rejected as ``empty_caption``.
    caption_max_chars: int = 300
    #: Smallest accepted source image side (width and height), in pixels. Below -> ``image_too_small``.
    min_image_side: int = 8
    #: Largest accepted source image side (width and height), in pixels. Above -> ``image_too_large``.
    max_image_side: int = 8192
    #: Smallest accepted std of the decoded, resized image in [0, 1]. Below -> ``constant_image``.
    min_pixel_std: float = 0.01

    def __post_init__(self) -> None:
        for name in ("caption_max_chars", "min_image_side", "max_image_side"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
                raise ValueError(f"ValidationLimits.{name} must be an integer, got {value!r}")
            if not float(value).is_integer():
                raise ValueError(f"ValidationLimits.{name} must be an integer, got {value!r}")
            setattr(self, name, int(value))
        value = self.min_pixel_std
        if isinstance(value, bool) or not isinstance(value, (int, np.integer, float, np.floating)):
            raise ValueError(f"ValidationLimits.min_pixel_std must be a number, got {value!r}")
        self.min_pixel_std = float(value)
        if self.caption_max_chars < 1:
            raise ValueError(f"caption_max_chars must be >= 1, got {self.caption_max_chars}")
        if self.min_image_side < 1:
            raise ValueError(f"min_image_side must be >= 1, got {self.min_image_side}")
        if self.max_image_side < self.min_image_side:
            raise ValueError(
                f"max_image_side ({self.max_image_side}) must be >= min_image_side ({self.min_image_side})"
            )
        if not (math.isfinite(self.min_pixel_std) and self.min_pixel_std >= 0.0):
            raise ValueError(f"min_pixel_std must be a finite number >= 0, got {self.min_pixel_std}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> "ValidationLimits":
        """Inverse of ``to_dict``; missing keys (or ``None``) take the defaults, unknown keys are an error."""
        data = dict(data or {})
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown ValidationLimits keys: {sorted(unknown)}")
        return cls(**{k: data[k] for k in known if k in data})


# ----------------------------------------------------------------------------- checks


@dataclass
class _Check:
    """One GX expectation plus how its unexpected values map to reason codes."""

    name: str
    expectation: Any  # a gx.expectations.Expectation
    reasons: tuple[str, ...]  # every code this check can give ("<image_status>" for the status one)
    reason_of: Callable[[Any], str]  # unexpected value -> reason code
    value_column: str | None = None  # the column whose value picks the code; None: one fixed code
    expectation_id: str | None = None


def _fixed(code: str) -> Callable[[Any], str]:
    return lambda _value: code


def _below_or_above(bound: float, below: str, above: str) -> Callable[[Any], str]:
    # GX already decided the value is outside [min, max]; this only says which side.
    return lambda value: below if float(value) < bound else above


def _status_code(value: Any) -> str:
    return str(value)


def _build_checks(limits: ValidationLimits) -> list[_Check]:
    image_ok = Column("image_status") == IMAGE_OK
    side = dict(min_value=limits.min_image_side, max_value=limits.max_image_side, row_condition=image_ok)
    side_reason = _below_or_above(limits.min_image_side, IMAGE_TOO_SMALL, IMAGE_TOO_LARGE)
    return [
        _Check(
            "unique_sample_id",
            gxe.ExpectColumnValuesToBeInSet(column="seen_before", value_set=[False]),
            (DUPLICATE_SAMPLE_ID,),
            _fixed(DUPLICATE_SAMPLE_ID),
        ),
        _Check(
            "sample_id_present",
            gxe.ExpectColumnValuesToNotBeNull(column="sample_id"),
            (MISSING_SAMPLE_ID,),
            _fixed(MISSING_SAMPLE_ID),
        ),
        _Check(
            "caption_present",
            gxe.ExpectColumnValuesToNotBeNull(column="caption"),
            (MISSING_CAPTION,),
            _fixed(MISSING_CAPTION),
        ),
        _Check(
            "caption_length_within_limits",
            gxe.ExpectColumnValuesToBeBetween(
                column="caption_chars",
                min_value=1,
                max_value=limits.caption_max_chars,
                row_condition=Column("caption").is_not_null(),
            ),
            (EMPTY_CAPTION, CAPTION_TOO_LONG),
            _below_or_above(1, EMPTY_CAPTION, CAPTION_TOO_LONG),
            value_column="caption_chars",
        ),
        _Check(
            "image_decodable",
            gxe.ExpectColumnValuesToBeInSet(column="image_status", value_set=[IMAGE_OK]),
            ("<image_status>",),
            _status_code,
            value_column="image_status",
        ),
        _Check(
            "image_width_within_limits",
            gxe.ExpectColumnValuesToBeBetween(column="width", **side),
            (IMAGE_TOO_SMALL, IMAGE_TOO_LARGE),
            side_reason,
            value_column="width",
        ),
        _Check(
            "image_height_within_limits",
            gxe.ExpectColumnValuesToBeBetween(column="height", **side),
            (IMAGE_TOO_SMALL, IMAGE_TOO_LARGE),
            side_reason,
            value_column="height",
        ),
        _Check(
            "image_not_constant",
            gxe.ExpectColumnValuesToBeBetween(
                column="pixel_std", min_value=limits.min_pixel_std, row_condition=image_ok
            ),
            (CONSTANT_IMAGE,),
            _fixed(CONSTANT_IMAGE),
        ),
    ]


def _raised(exception_info: Any) -> str | None:
    """The exception message if a GX result carries a raised exception (flat or per-metric dict)."""
    if not isinstance(exception_info, Mapping):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message"))
    for value in exception_info.values():
        if isinstance(value, Mapping):
            message = _raised(value)
            if message is not None:
                return message
    return None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def _none_if_nan(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


# ----------------------------------------------------------------------------- validator


@dataclass
class _CheckStats:
    success: bool = True
    chunks: int = 0
    failed_chunks: int = 0
    element_count: int = 0
    unexpected_count: int = 0
    missing_count: int = 0
    reason_counts: Counter = field(default_factory=Counter)


class ChunkValidator:
    """Validates chunks of ingested rows with one GX suite; keeps per-expectation totals.

    The ephemeral context, pandas data source, dataframe asset, whole-dataframe batch
    definition and the expectation suite are created once here and reused for every chunk.
    """

    DATASOURCE_NAME = "bitlatent_ingest"
    ASSET_NAME = "chunk"
    BATCH_DEFINITION_NAME = "whole_chunk"
    SUITE_NAME = "bitlatent_rows"

    def __init__(self, limits: ValidationLimits | None = None):
        self.limits = limits if limits is not None else ValidationLimits()
        self._context = gx.get_context(
            mode="ephemeral",
            project_config=DataContextConfig(
                store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
                analytics_enabled=False,
                progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
            ),
        )
        datasource = self._context.data_sources.add_pandas(name=self.DATASOURCE_NAME)
        asset = datasource.add_dataframe_asset(name=self.ASSET_NAME)
        self._batch_definition = asset.add_batch_definition_whole_dataframe(self.BATCH_DEFINITION_NAME)

        self._checks = _build_checks(self.limits)
        self._suite = self._context.suites.add(gx.ExpectationSuite(name=self.SUITE_NAME))
        for check in self._checks:
            check.expectation.meta = {"bitlatent_check": check.name}
            check.expectation = self._suite.add_expectation(check.expectation)
            check.expectation_id = check.expectation.id
        self._by_id = {check.expectation_id: check for check in self._checks}
        if None in self._by_id or len(self._by_id) != len(self._checks):
            raise RuntimeError("Great Expectations did not give every expectation its own id")
        # kwargs as GX serialises them (row_condition as a dict), without the per-batch id
        self._kwargs = {
            check.name: _jsonable(
                {k: v for k, v in check.expectation.configuration.to_json_dict()["kwargs"].items() if k != "batch_id"}
            )
            for check in self._checks
        }
        self._reset_stats()

    # ------------------------------------------------------------------ public API

    @property
    def suite(self) -> gx.ExpectationSuite:
        """The GX suite every chunk is validated against (read-only use)."""
        return self._suite

    def validate(self, chunk: pd.DataFrame) -> list[list[str]]:
        """Per-row reason codes (empty list = accepted), aligned with chunk rows; accumulates per-expectation stats."""
        df = self._checked_frame(chunk)
        n = len(df)
        reasons: list[list[str]] = [[] for _ in range(n)]
        if n == 0:
            return reasons

        started = time.perf_counter()
        batch = self._batch_definition.get_batch(batch_parameters={"dataframe": df})
        result = batch.validate(self._suite, result_format=_RESULT_FORMAT)
        self._seconds += time.perf_counter() - started

        per_check = self._results_by_check(result)
        for check in self._checks:
            er = per_check[check.name]
            res = er.result
            indices = res.get("unexpected_index_list")
            unexpected = int(res.get("unexpected_count") or 0)
            if indices is None or len(indices) != unexpected:
                raise RuntimeError(
                    f"Great Expectations returned incomplete per-row results for {check.name!r}: "
                    f"unexpected_count={unexpected}, "
                    f"{'no' if indices is None else len(indices)} entries in unexpected_index_list"
                )
            positions = np.asarray(indices, dtype=np.int64)
            codes = self._codes(check, df, positions, res.get("unexpected_list"))
            stats = self._stats[check.name]
            for position, code in zip(positions.tolist(), codes):
                row = reasons[position]
                if code not in row:
                    row.append(code)
            stats.reason_counts.update(codes)
            stats.chunks += 1
            stats.success = stats.success and bool(er.success)
            stats.failed_chunks += 0 if er.success else 1
            stats.element_count += int(res.get("element_count") or 0)
            stats.unexpected_count += unexpected
            stats.missing_count += int(res.get("missing_count") or 0)

        self._accumulate(df, reasons)
        return reasons

    def summary(self) -> dict[str, Any]:
        """Each expectation's aggregate over all chunks so far, plus row totals and image statistics.

        ``expectations`` lists, in suite order: ``name`` (bitlatent check name), ``expectation_type``
        (the GX type, e.g. ``expect_column_values_to_be_between``), ``kwargs`` (as GX serialises them),
        ``success`` (every chunk passed), ``chunks`` / ``failed_chunks``, ``element_count``,
        ``unexpected_count`` and ``missing_count`` (GX's numbers, summed over chunks; with a
        row_condition GX counts only the rows the condition keeps), ``reasons`` (codes the check can
        give) and ``reason_counts`` (rows per code given). ``image_stats`` are over accepted rows.
        Everything is JSON-serialisable.
        """
        expectations = []
        for check in self._checks:
            s = self._stats[check.name]
            expectations.append(
                {
                    "name": check.name,
                    "expectation_type": check.expectation.expectation_type,
                    "kwargs": self._kwargs[check.name],
                    "success": s.success,
                    "chunks": s.chunks,
                    "failed_chunks": s.failed_chunks,
                    "element_count": s.element_count,
                    "unexpected_count": s.unexpected_count,
                    "missing_count": s.missing_count,
                    "reasons": list(check.reasons),
                    "reason_counts": dict(sorted(s.reason_counts.items())),
                }
            )
        accepted = self._accepted
        return {
            "great_expectations_version": gx.__version__,
            "suite_name": self.SUITE_NAME,
            "limits": self.limits.to_dict(),
            "chunks": self._chunks,
            "rows": self._rows,
            "accepted_rows": accepted,
            "rejected_rows": self._rows - accepted,
            "success": all(e["success"] for e in expectations),
            "rows_by_reason": dict(sorted(self._rows_by_reason.items())),
            "expectations": expectations,
            "image_stats": {
                "rows": accepted,
                "pixel_mean_mean": _none_if_nan(self._sum["pixel_mean"] / self._count["pixel_mean"])
                if self._count["pixel_mean"]
                else None,
                "pixel_std_mean": _none_if_nan(self._sum["pixel_std"] / self._count["pixel_std"])
                if self._count["pixel_std"]
                else None,
                "width_min": _none_if_nan(self._min["width"]),
                "width_max": _none_if_nan(self._max["width"]),
                "height_min": _none_if_nan(self._min["height"]),
                "height_max": _none_if_nan(self._max["height"]),
            },
            "ge_seconds": round(self._seconds, 6),
        }

    # ------------------------------------------------------------------ internals

    def _reset_stats(self) -> None:
        self._stats = {check.name: _CheckStats() for check in self._checks}
        self._chunks = 0
        self._rows = 0
        self._accepted = 0
        self._rows_by_reason: Counter = Counter()
        self._sum = {"pixel_mean": 0.0, "pixel_std": 0.0}
        self._count = {"pixel_mean": 0, "pixel_std": 0}
        self._min = {"width": math.inf, "height": math.inf}
        self._max = {"width": -math.inf, "height": -math.inf}
        self._seconds = 0.0

    @staticmethod
    def _checked_frame(chunk: pd.DataFrame) -> pd.DataFrame:
        if not isinstance(chunk, pd.DataFrame):
            raise TypeError(f"validate() takes a pandas DataFrame, got {type(chunk).__name__}")
        if len(chunk) == 0:  # pd.DataFrame([]) of an empty chunk has no columns at all
            return chunk.reset_index(drop=True)
        missing = [c for c in REQUIRED_COLUMNS if c not in chunk.columns]
        if missing:
            raise ValueError(f"chunk is missing columns {missing}")
        # GX skips nulls in column-map expectations, so these would silently pass: refuse them.
        for column in ("image_status", "seen_before", "caption_chars"):
            if chunk[column].isna().any():
                raise ValueError(f"chunk column {column!r} must not contain nulls")
        ok = chunk["image_status"] == IMAGE_OK
        for column in ("width", "height", "pixel_std"):
            if chunk.loc[ok, column].isna().any():
                raise ValueError(f"rows with image_status 'ok' must have a {column!r} value (got NaN)")
        # GX reports index labels; a fresh RangeIndex makes them row positions.
        return chunk.reset_index(drop=True)

    @staticmethod
    def _codes(check: _Check, df: pd.DataFrame, positions: np.ndarray, gx_values: list | None) -> list[str]:
        """Reason codes of the rows GX reported as unexpected for ``check``.

        GX 1.x caps ``unexpected_list`` at 200 values (``MAX_RESULT_RECORDS``) even with result
        format COMPLETE, while ``unexpected_index_list`` is complete; so for the checks whose code
        depends on the value, the value is read from the chunk at GX's indices, and checked against
        the (capped) values GX reported to catch any misalignment.
        """
        if check.value_column is None:
            return [check.reason_of(None)] * len(positions)
        values = df[check.value_column].to_numpy()[positions].tolist()
        if gx_values is not None and list(gx_values) != values[: len(gx_values)]:
            raise RuntimeError(
                f"Great Expectations unexpected values for {check.name!r} do not match its unexpected indices"
            )
        return [check.reason_of(value) for value in values]

    def _results_by_check(self, result: Any) -> dict[str, Any]:
        per_check: dict[str, Any] = {}
        for er in result.results:
            check = self._by_id.get(er.expectation_config.id)
            if check is None:
                raise RuntimeError(f"unexpected GX result for {er.expectation_config.type}")
            message = _raised(er.exception_info)
            if message is not None:
                raise RuntimeError(f"Great Expectations failed to evaluate {check.name!r}: {message}")
            per_check[check.name] = er
        absent = [c.name for c in self._checks if c.name not in per_check]
        if absent:
            raise RuntimeError(f"Great Expectations returned no result for {absent}")
        return per_check

    def _accumulate(self, df: pd.DataFrame, reasons: list[list[str]]) -> None:
        self._chunks += 1
        self._rows += len(df)
        for row in reasons:
            self._rows_by_reason.update(row)
        accepted_mask = np.fromiter((not r for r in reasons), dtype=bool, count=len(reasons))
        n_accepted = int(accepted_mask.sum())
        self._accepted += n_accepted
        if not n_accepted:
            return
        accepted = df.loc[accepted_mask]
        for column in ("pixel_mean", "pixel_std"):
            values = pd.to_numeric(accepted[column], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            self._sum[column] += float(values.sum())
            self._count[column] += int(values.size)
        for column in ("width", "height"):
            values = pd.to_numeric(accepted[column], errors="coerce").to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            if values.size:
                self._min[column] = min(self._min[column], float(values.min()))
                self._max[column] = max(self._max[column], float(values.max()))
