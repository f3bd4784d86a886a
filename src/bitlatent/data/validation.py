"""Row validation of ingested (image, caption) chunks with Great Expectations (GX Core 1.x).

The ingest streams rows in chunks and calls ``ChunkValidator.validate`` once per chunk with a
pandas DataFrame of per-row facts (see ``REQUIRED_COLUMNS``). Every check is a Great Expectations
expectation in one ``ExpectationSuite`` built once, in an *ephemeral* (in-memory, offline) data
context, and reused for every chunk. GX is the source of truth for which rows fail: the failing
row positions come from GX's own ``unexpected_index_list`` (result format ``COMPLETE``), never
from re-implementing a check in pandas.

Where things are: the reason codes, required columns and ``ValidationLimits`` in ``rules.py``;
the checks (the table of expectations and reason codes), null handling and the GX context in
``expectations.py``; here, the validator that runs the suite per chunk and keeps the totals.
Every public name is importable from this module.

Inputs that break the contract (a missing column, a null ``image_status`` / ``seen_before`` /
``caption_chars``, an "ok" row without width/height/pixel_std) raise ``ValueError`` instead of
being silently accepted: GX skips nulls, so such rows would otherwise pass every check. An
exception inside GX (which GX reports in the result instead of raising) raises ``RuntimeError``.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bitlatent.data.expectations import (
    GX_VERSION,
    RESULT_FORMAT,
    Check,
    add_suite,
    build_checks,
    ephemeral_context,
    raised,
    serialised_kwargs,
)
from bitlatent.data.rules import IMAGE_OK, IMAGE_STATUS_CODES, REASON_CODES, REQUIRED_COLUMNS, ValidationLimits

if TYPE_CHECKING:
    import great_expectations as gx

__all__ = [
    "ChunkValidator",
    "IMAGE_STATUS_CODES",
    "REASON_CODES",
    "REQUIRED_COLUMNS",
    "ValidationLimits",
]


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
        self._context = ephemeral_context()
        datasource = self._context.data_sources.add_pandas(name=self.DATASOURCE_NAME)
        asset = datasource.add_dataframe_asset(name=self.ASSET_NAME)
        self._batch_definition = asset.add_batch_definition_whole_dataframe(self.BATCH_DEFINITION_NAME)

        self._checks = build_checks(self.limits)
        self._suite = add_suite(self._context, self.SUITE_NAME, self._checks)
        self._by_id = {check.expectation_id: check for check in self._checks}
        if None in self._by_id or len(self._by_id) != len(self._checks):
            raise RuntimeError("Great Expectations did not give every expectation its own id")
        self._kwargs = {check.name: serialised_kwargs(check.expectation) for check in self._checks}
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
        result = batch.validate(self._suite, result_format=RESULT_FORMAT)
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
            "great_expectations_version": GX_VERSION,
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
    def _codes(check: Check, df: pd.DataFrame, positions: np.ndarray, gx_values: list | None) -> list[str]:
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
            message = raised(er.exception_info)
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
