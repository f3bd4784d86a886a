"""The row checks as Great Expectations (GX Core 1.x) expectations, and the GX plumbing around them.

Every check is one expectation plus how its unexpected values map to reason codes (``Check``);
``build_checks`` makes them from the limits, ``add_suite`` puts them in one ``ExpectationSuite``
of an *ephemeral* (in-memory, offline) data context (``ephemeral_context``). The only thing
decided outside GX is, for the two "between" checks with two reason codes, which side of the
range GX's reported unexpected value lies on (``empty_caption`` vs ``caption_too_long``,
``image_too_small`` vs ``image_too_large``).

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

Analytics: ``GX_ANALYTICS_ENABLED`` is set to ``false`` before ``great_expectations`` is imported
and the context is created with ``analytics_enabled=False``. (GX Core 1.24.1 ships no analytics
client at all; both switches are kept for older/newer 1.x releases.) Progress bars are off.
"""

from __future__ import annotations

import os

# Must happen before great_expectations is imported anywhere in this process.
os.environ["GX_ANALYTICS_ENABLED"] = "false"

import math  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from typing import Any, Callable, Mapping  # noqa: E402

import numpy as np  # noqa: E402

import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
from great_expectations.data_context.types.base import (  # noqa: E402
    DataContextConfig,
    InMemoryStoreBackendDefaults,
    ProgressBarsConfig,
)
from great_expectations.expectations.row_conditions import Column  # noqa: E402

from bitlatent.data.rules import (  # noqa: E402
    CAPTION_TOO_LONG,
    CONSTANT_IMAGE,
    DUPLICATE_SAMPLE_ID,
    EMPTY_CAPTION,
    IMAGE_OK,
    IMAGE_TOO_LARGE,
    IMAGE_TOO_SMALL,
    MISSING_CAPTION,
    MISSING_SAMPLE_ID,
    ValidationLimits,
)

__all__ = ["Check", "GX_VERSION", "RESULT_FORMAT", "add_suite", "build_checks", "ephemeral_context",
           "raised", "serialised_kwargs"]  # fmt: skip

GX_VERSION: str = gx.__version__

# Full per-row failure lists; the unexpected_index_query string is not needed (it is a long
# "df.filter(items=[...])" string) so it is not built.
RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "return_unexpected_index_query": False,
}


# ----------------------------------------------------------------------------- checks


@dataclass
class Check:
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


def build_checks(limits: ValidationLimits) -> list[Check]:
    """The checks of the table above, in that order."""
    image_ok = Column("image_status") == IMAGE_OK
    side = dict(min_value=limits.min_image_side, max_value=limits.max_image_side, row_condition=image_ok)
    side_reason = _below_or_above(limits.min_image_side, IMAGE_TOO_SMALL, IMAGE_TOO_LARGE)
    return [
        Check(
            "unique_sample_id",
            gxe.ExpectColumnValuesToBeInSet(column="seen_before", value_set=[False]),
            (DUPLICATE_SAMPLE_ID,),
            _fixed(DUPLICATE_SAMPLE_ID),
        ),
        Check(
            "sample_id_present",
            gxe.ExpectColumnValuesToNotBeNull(column="sample_id"),
            (MISSING_SAMPLE_ID,),
            _fixed(MISSING_SAMPLE_ID),
        ),
        Check(
            "caption_present",
            gxe.ExpectColumnValuesToNotBeNull(column="caption"),
            (MISSING_CAPTION,),
            _fixed(MISSING_CAPTION),
        ),
        Check(
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
        Check(
            "image_decodable",
            gxe.ExpectColumnValuesToBeInSet(column="image_status", value_set=[IMAGE_OK]),
            ("<image_status>",),
            _status_code,
            value_column="image_status",
        ),
        *(
            Check(
                f"image_{column}_within_limits",
                gxe.ExpectColumnValuesToBeBetween(column=column, **side),
                (IMAGE_TOO_SMALL, IMAGE_TOO_LARGE),
                side_reason,
                value_column=column,
            )
            for column in ("width", "height")
        ),
        Check(
            "image_not_constant",
            gxe.ExpectColumnValuesToBeBetween(
                column="pixel_std", min_value=limits.min_pixel_std, row_condition=image_ok
            ),
            (CONSTANT_IMAGE,),
            _fixed(CONSTANT_IMAGE),
        ),
    ]


# ----------------------------------------------------------------------------- GX plumbing


def ephemeral_context() -> Any:
    """An in-memory GX data context: no files, no analytics, no progress bars."""
    return gx.get_context(
        mode="ephemeral",
        project_config=DataContextConfig(
            store_backend_defaults=InMemoryStoreBackendDefaults(init_temp_docs_sites=False),
            analytics_enabled=False,
            progress_bars=ProgressBarsConfig(globally=False, metric_calculations=False),
        ),
    )


def add_suite(context: Any, name: str, checks: list[Check]) -> gx.ExpectationSuite:
    """A new suite ``name`` in ``context`` with every check's expectation, in order; each check then
    holds the suite's copy of its expectation and that expectation's id."""
    suite = context.suites.add(gx.ExpectationSuite(name=name))
    for check in checks:
        check.expectation.meta = {"bitlatent_check": check.name}
        check.expectation = suite.add_expectation(check.expectation)
        check.expectation_id = check.expectation.id
    return suite


def serialised_kwargs(expectation: Any) -> dict[str, Any]:
    """An expectation's kwargs as GX serialises them (row_condition as a dict), without the
    per-batch id, JSON-serialisable."""
    kwargs = expectation.configuration.to_json_dict()["kwargs"]
    return _jsonable({k: v for k, v in kwargs.items() if k != "batch_id"})


def raised(exception_info: Any) -> str | None:
    """The exception message if a GX result carries a raised exception (flat or per-metric dict)."""
    if not isinstance(exception_info, Mapping):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message"))
    for value in exception_info.values():
        if isinstance(value, Mapping):
            message = raised(value)
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
