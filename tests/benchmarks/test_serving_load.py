"""The serving load benchmark for a few seconds on the tiny bundle: under concurrent good and bad
requests the server answers no 5xx, every bad request gets its 4xx with a message, every valid
one its images, and it is still up with no traceback in its log."""

import sys
from pathlib import Path

import pytest

from tests.export.tiny import tiny_export

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

import serving_load  # noqa: E402


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_export(tmp_path_factory)


def test_no_5xx_and_every_bad_request_a_4xx_with_a_message(tiny):
    result = serving_load.run(tiny.bundle, clients=3, seconds=3.0, threads=1, warmup_rounds=1)
    assert result["problems"] == []
    assert result["server_alive"] and result["tracebacks_in_log"] == 0
    assert set(result["by_kind"]) == {k.name for k in serving_load.KINDS}  # every kind was sent under load
    assert not any(status.startswith("5") or status == "0" for status in result["statuses"])


def test_the_check_catches_a_5xx_a_bare_4xx_and_a_wrong_status():
    """The checker itself can fail: answers that break the contract are each named."""
    answers = [serving_load.Answer("malformed_json", 500, 0.01, "boom"),
               serving_load.Answer("empty_prompt", 400, 0.01, ""),
               serving_load.Answer("unknown_model", 400, 0.01, "no"),
               serving_load.Answer("valid", 200, 0.01, "", images=0),
               serving_load.Answer("valid", 0, 0.01, "ConnectionResetError"),
               serving_load.Answer("bad_parameter", 400, 0.01, "parameter 'temperature' must be in")]
    found = serving_load.problems(answers)
    assert len(found) == 5 and found[0].startswith("malformed_json: 500")
    assert "without an error message" in found[1] and "expected 404" in found[2]
