"""Reading count queries: every answer that waiting will not fix is refused, and says why."""

from __future__ import annotations

import math

import pytest

from modelcanary.analysis import counts
from modelcanary.analysis.counts import Answer, CountsError, Series

pytestmark = pytest.mark.unit


def answer(*series: tuple[dict[str, str], float]) -> Answer:
    return Answer(tuple(Series(labels, value) for labels, value in series))


def test_no_failed_series_means_nothing_failed_yet() -> None:
    found = counts.error_counts(answer(), answer(({}, 120.0)), None)
    assert found == {"": (0.0, 120.0)}


def test_errors_per_slice() -> None:
    failed = answer(({"segment": "eu"}, 3.0))
    total = answer(({"segment": "eu"}, 30.0), ({"segment": "us"}, 50.0))
    assert counts.error_counts(failed, total, "segment") == {"eu": (3.0, 30.0), "us": (0.0, 50.0)}


@pytest.mark.parametrize(
    ("failed", "total", "label", "message"),
    [
        (
            answer(({}, 1.5)),
            answer(({}, 10.0)),
            None,
            "not a whole number: the query must return raw counters",
        ),
        (answer(({}, 11.0)), answer(({}, 10.0)), None, "more failed (11) than total (10)"),
        (answer(), answer(({}, 1.0), ({}, 2.0)), None, "several series: aggregate it with sum"),
        (
            answer(),
            answer(({}, 5.0)),
            "segment",
            "has no segment label: the query must group by segment",
        ),
        (
            answer(({"segment": "eu"}, 1.0)),
            answer(({"segment": "us"}, 5.0)),
            "segment",
            "failed requests but no total for slice 'eu'",
        ),
        (answer(), answer(({}, -1.0)), None, "not a count"),
        (answer(), answer(({}, math.nan)), None, "not a count"),
    ],
)
def test_unusable_error_counts_are_refused(
    failed: Answer, total: Answer, label: str | None, message: str
) -> None:
    with pytest.raises(CountsError) as raised:
        counts.error_counts(failed, total, label)
    assert message in str(raised.value)


def test_a_histogram_is_read_per_slice() -> None:
    buckets = answer(
        ({"le": "0.1", "segment": "eu"}, 3.0),
        ({"le": "+Inf", "segment": "eu"}, 10.0),
        ({"le": "0.1", "segment": "us"}, 0.0),
        ({"le": "+Inf", "segment": "us"}, 0.0),
    )
    found = counts.histograms(buckets, "segment")
    assert found["eu"].cumulative == {0.1: 3.0, math.inf: 10.0}
    assert found["eu"].total == 10
    assert counts.exceedances(found["eu"], [0.1]) == {0.1: 7.0}
    assert counts.bucket_counts(found["eu"], [0.1, math.inf]) == {0.1: 3.0, math.inf: 7.0}


@pytest.mark.parametrize(
    ("series", "message"),
    [
        ([({}, 3.0)], "has no le label: the query must keep it, sum by (le)"),
        ([({"le": "0.1"}, 3.0)], "the +Inf bucket is missing"),
        ([({"le": "0.1"}, 5.0), ({"le": "+Inf"}, 4.0)], "counts fewer than le=0.1"),
        ([({"le": "x"}, 5.0)], "le='x' is not a number"),
        (
            [({"le": "0.1"}, 1.0), ({"le": "0.1"}, 1.0), ({"le": "+Inf"}, 2.0)],
            "several series for le=0.1",
        ),
        ([({"le": "0.1"}, 0.25), ({"le": "+Inf"}, 1.0)], "not a whole number"),
    ],
)
def test_unusable_histograms_are_refused(
    series: list[tuple[dict[str, str], float]], message: str
) -> None:
    with pytest.raises(CountsError) as raised:
        counts.histograms(answer(*series), None)
    assert message in str(raised.value)
