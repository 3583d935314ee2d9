"""How the batcher groups requests, splits batched answers, and falls back.

The tests replace Prometheus with a fake at the network edge (a SeriesProvider
answering from a table per revision), which is enough to check grouping,
splitting and every fallback. Which shapes batch, and how they are rewritten, is
tests/unit/promql/test_rewrite.py. tests/integration/test_prometheus_provider.py
proves against the real Prometheus that batched answers equal single ones.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping, Sequence
from datetime import datetime

import pytest

from modelcanary.analysis.failures import Failure
from modelcanary.analysis.samples import Sample
from modelcanary.metrics import QueryResult, Series
from modelcanary.metrics.batching import QueryBatcher
from modelcanary.promql.templates import TemplateValues, render

pytestmark = pytest.mark.unit


class FakePrometheus:
    """Answers any query from a table per revision, as Prometheus would.

    A revision's entry is a number, or a histogram's buckets ``{le: count}``,
    which are answered with one series per bucket labelled with its ``le``. A
    query with ``revision="r"`` gets r's series without a revision label; one
    with ``revision=~"r1|r2"`` gets the series of every revision, each labelled
    with its revision. Revisions absent from the table have no data.
    """

    def __init__(self, values: Mapping[str, float | Mapping[str, float]]) -> None:
        self.values = values
        self.queries: list[str] = []
        self.instants: list[datetime | None] = []
        self.batch_answer: QueryResult | None = None
        self.single_answer: QueryResult | None = None

    async def query_series(self, query: str, *, at: datetime | None = None) -> QueryResult:
        self.queries.append(query)
        self.instants.append(at)
        await asyncio.sleep(0)  # a real provider yields to the loop
        if "revision=~" in query:
            if self.batch_answer is not None:
                return self.batch_answer
            alternation = re.search(r'revision=~"([^"]*)"', query)
            assert alternation is not None
            revisions = alternation.group(1).replace("\\\\", "\\").split("|")
            return QueryResult(
                series=tuple(
                    Series({**labels, "revision": r}, value)
                    for r in revisions
                    for labels, value in self.series_of(r)
                )
            )
        if self.single_answer is not None:
            return self.single_answer
        single = re.search(r'revision="([^"]*)"', query)
        assert single is not None
        return QueryResult(
            series=tuple(Series(labels, value) for labels, value in self.series_of(single[1]))
        )

    def series_of(self, revision: str) -> list[tuple[dict[str, str], float]]:
        entry = self.values.get(revision)
        if entry is None:
            return []
        if isinstance(entry, Mapping):
            return [({"le": le}, count) for le, count in entry.items()]
        return [({}, entry)]

    async def run_query(self, query: str) -> Sample:
        return (await self.query_series(query)).sample()

    async def is_online(self) -> bool:
        return True

    @property
    def batched(self) -> list[str]:
        return [q for q in self.queries if "revision=~" in q]

    @property
    def singles(self) -> list[str]:
        return [q for q in self.queries if "revision=~" not in q]


def values(revision: str, namespace: str = "ml", name: str = "fraud") -> TemplateValues:
    return TemplateValues(
        namespace=namespace, name=name, revision=revision, model="fraud", version="1"
    )


SUM = 'sum(rate(x{revision="{{revision}}"}[1m]))'
NAMESPACED = 'sum(rate(x{namespace="{{namespace}}",revision="{{revision}}"}[1m]))'
BUCKETS = 'sum by (le) (rate(x_bucket{revision="{{revision}}"}[1m]))'


def run(batcher: QueryBatcher, requests: Sequence[tuple[str, TemplateValues]]) -> list[QueryResult]:
    return asyncio.run(batcher.run(requests))


def numbers(results: Sequence[QueryResult]) -> list[Sample]:
    """Each result as the analysis reads it: one number, no data, or an error."""
    return [result.sample() for result in results]


def labelled(revision: str, value: float) -> QueryResult:
    """A revision's part of a batched answer: its one series, labelled with the revision."""
    return QueryResult(series=(Series({"revision": revision}, value),))


def without_revision(result: QueryResult) -> list[tuple[dict[str, str], float]]:
    return [
        ({k: v for k, v in s.labels.items() if k != "revision"}, s.value) for s in result.series
    ]


def test_revisions_sharing_a_template_take_one_query_and_get_their_own_values() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0, "ccc": 3.0})
    results = run(QueryBatcher(prometheus), [(SUM, values(r)) for r in ("ccc", "aaa", "bbb")])
    # Each revision's own series, with the revision label the batched query added.
    assert results == [labelled("ccc", 3.0), labelled("aaa", 1.0), labelled("bbb", 2.0)]
    assert numbers(results) == [Sample.of(3.0), Sample.of(1.0), Sample.of(2.0)]
    assert prometheus.batched == ['sum by (revision)(rate(x{revision=~"aaa|bbb|ccc"}[1m]))']
    assert prometheus.singles == []


def test_a_revision_missing_from_the_batched_answer_has_no_data() -> None:
    prometheus = FakePrometheus({"aaa": 1.0})
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("zzz"))])
    assert results[1] == QueryResult()
    assert numbers(results) == [Sample.of(1.0), Sample.of(None)]
    assert len(prometheus.queries) == 1


def test_nan_in_a_batched_answer_is_no_data_for_that_revision_only() -> None:
    prometheus = FakePrometheus({"aaa": float("nan"), "bbb": 2.0})
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    assert numbers(results) == [Sample.of(None), Sample.of(2.0)]


def test_a_lone_revision_runs_the_query_exactly_as_written() -> None:
    prometheus = FakePrometheus({"aaa": 1.0})
    # The single query's answer as Prometheus sent it: no revision label added.
    assert run(QueryBatcher(prometheus), [(SUM, values("aaa"))]) == [
        QueryResult(series=(Series({}, 1.0),))
    ]
    assert prometheus.queries == [render(SUM, values("aaa"))]


def test_several_series_per_revision_survive_batching_and_splitting() -> None:
    # A histogram's buckets: the batched query groups by (le, revision), and each
    # revision gets back all of its buckets, each with its le.
    histograms = {"aaa": {"0.1": 1.0, "0.5": 2.0, "+Inf": 3.0}, "bbb": {"0.1": 5.0, "+Inf": 9.0}}
    prometheus = FakePrometheus(histograms)
    batched = run(QueryBatcher(prometheus), [(BUCKETS, values(r)) for r in ("bbb", "aaa")])
    assert prometheus.batched == ['sum by (le, revision) (rate(x_bucket{revision=~"aaa|bbb"}[1m]))']
    assert batched == [
        QueryResult(
            series=(
                Series({"le": "0.1", "revision": "bbb"}, 5.0),
                Series({"le": "+Inf", "revision": "bbb"}, 9.0),
            )
        ),
        QueryResult(
            series=(
                Series({"le": "0.1", "revision": "aaa"}, 1.0),
                Series({"le": "0.5", "revision": "aaa"}, 2.0),
                Series({"le": "+Inf", "revision": "aaa"}, 3.0),
            )
        ),
    ]
    # Apart from the revision label, exactly what each revision's own query answers.
    single = [run(QueryBatcher(prometheus), [(BUCKETS, values(r))])[0] for r in ("bbb", "aaa")]
    assert [without_revision(r) for r in batched] == [without_revision(r) for r in single]
    assert [s.labels for s in single[1].series] == [{"le": "0.1"}, {"le": "0.5"}, {"le": "+Inf"}]
    # One number cannot be read from several series.
    assert all(sample.is_error for sample in numbers(batched))


def test_groups_follow_the_other_placeholders_the_template_uses() -> None:
    prometheus = FakePrometheus({"a1": 1.0, "a2": 2.0, "b1": 3.0, "b2": 4.0})
    requests = [
        (NAMESPACED, values("a1", namespace="team-a")),
        (NAMESPACED, values("a2", namespace="team-a")),
        (NAMESPACED, values("b1", namespace="team-b")),
        (NAMESPACED, values("b2", namespace="team-b")),
        # The same revisions through a template that ignores the namespace: one group.
        (SUM, values("a1", namespace="team-a")),
        (SUM, values("b1", namespace="team-b")),
    ]
    results = run(QueryBatcher(prometheus), requests)
    assert numbers(results) == [Sample.of(v) for v in (1.0, 2.0, 3.0, 4.0, 1.0, 3.0)]
    assert sorted(prometheus.batched) == [
        'sum by (revision)(rate(x{namespace="team-a",revision=~"a1|a2"}[1m]))',
        'sum by (revision)(rate(x{namespace="team-b",revision=~"b1|b2"}[1m]))',
        'sum by (revision)(rate(x{revision=~"a1|b1"}[1m]))',
    ]


def test_a_large_group_is_split_into_bounded_batches() -> None:
    revisions = [f"r{i:02d}" for i in range(7)]
    prometheus = FakePrometheus({r: float(i) for i, r in enumerate(revisions)})
    results = run(QueryBatcher(prometheus, max_revisions=3), [(SUM, values(r)) for r in revisions])
    assert numbers(results) == [Sample.of(float(i)) for i in range(7)]
    # 3 + 3 + 1: the last revision alone runs its own query.
    assert len(prometheus.batched) == 2
    assert prometheus.singles == [render(SUM, values("r06"))]


def test_unbatchable_templates_run_singly_and_identical_queries_run_once() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    template = 'sum(rate(x{revision="{{revision}}"}[1m])) or vector(0)'
    results = run(
        QueryBatcher(prometheus),
        [(template, values("aaa")), (template, values("bbb")), (template, values("aaa"))],
    )
    assert numbers(results) == [Sample.of(1.0), Sample.of(2.0), Sample.of(1.0)]
    assert sorted(prometheus.queries) == sorted(
        {render(template, values("aaa")), render(template, values("bbb"))}
    )


def test_a_revision_that_is_not_plain_runs_singly() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "b|c": 2.0})
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("b|c"))])
    assert numbers(results) == [Sample.of(1.0), Sample.of(2.0)]
    assert prometheus.batched == []


def test_a_batch_prometheus_rejects_falls_back_to_single_queries() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    prometheus.batch_answer = QueryResult.failed("too many samples", rejected=True)
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    # The single queries' own answers.
    assert results == [QueryResult(series=(Series({}, v),)) for v in (1.0, 2.0)]
    assert len(prometheus.batched) == 1
    assert sorted(prometheus.singles) == [render(SUM, values(r)) for r in ("aaa", "bbb")]


def test_an_outage_is_every_revisions_error_without_retrying_singly() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    prometheus.batch_answer = QueryResult.failed("connection refused")
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    assert results == [QueryResult.failed("connection refused")] * 2
    assert numbers(results) == [Sample.failed("connection refused")] * 2
    assert all(sample.kind is Failure.OUTAGE for sample in numbers(results))
    assert prometheus.singles == []


def test_a_rejected_query_is_an_error_through_answer_and_sample() -> None:
    prometheus = FakePrometheus({})
    prometheus.batch_answer = QueryResult.failed("too many samples", rejected=True)
    prometheus.single_answer = QueryResult.failed("parse error", rejected=True)
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    assert [r.kind for r in results] == [Failure.ERROR] * 2
    assert [r.answer().kind for r in results] == [Failure.ERROR] * 2
    assert numbers(results) == [Sample.failed("parse error", Failure.ERROR)] * 2


@pytest.mark.parametrize(
    "stray",
    [
        pytest.param(Series({}, 5.0), id="no-revision-label"),
        pytest.param(Series({"revision": "zzz"}, 5.0), id="unrequested-revision"),
    ],
)
def test_a_batched_answer_with_a_stray_series_is_distrusted(stray: Series) -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    prometheus.batch_answer = QueryResult(
        series=(Series({"revision": "aaa"}, 7.0), Series({"revision": "bbb"}, 8.0), stray)
    )
    results = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    # The single queries' values, not the suspicious batch's.
    assert numbers(results) == [Sample.of(1.0), Sample.of(2.0)]
    assert len(prometheus.singles) == 2


def test_several_series_for_one_revision_are_that_revisions_error() -> None:
    prometheus = FakePrometheus({})
    prometheus.batch_answer = QueryResult(
        series=(
            Series({"revision": "aaa", "code": "200"}, 1.0),
            Series({"revision": "aaa", "code": "500"}, 2.0),
            Series({"revision": "bbb", "code": "200"}, 3.0),
        )
    )
    template = 'sum by (code) (x{revision="{{revision}}"})'
    results = run(QueryBatcher(prometheus), [(template, values("aaa")), (template, values("bbb"))])
    # Both of aaa's series come back; only reading them as one number is an error.
    assert [s.labels["code"] for s in results[0].series] == ["200", "500"]
    samples = numbers(results)
    assert samples[0].is_error
    assert samples[0].kind is Failure.ERROR  # waiting will not make it one series
    assert "returned 2" in (samples[0].error or "")
    assert 'code="500"' in (samples[0].error or "")
    assert samples[1] == Sample.of(3.0)


def test_a_broken_template_is_a_rejected_result_and_does_not_stop_the_others() -> None:
    prometheus = FakePrometheus({"aaa": 1.0})
    results = run(
        QueryBatcher(prometheus), [('x{pod="{{pod}}"}', values("aaa")), (SUM, values("aaa"))]
    )
    assert results[0].rejected
    assert (results[0].error or "").startswith("invalid query template: unknown placeholder")
    assert "{{pod}}" in (results[0].error or "")
    assert results[0].sample().is_error
    assert results[0].sample().kind is Failure.ERROR
    assert results[1].sample() == Sample.of(1.0)
    assert prometheus.queries == [render(SUM, values("aaa"))]


def test_the_same_request_twice_gets_the_same_answer_from_one_query() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    requests = [(SUM, values("aaa")), (SUM, values("bbb")), (SUM, values("aaa"))]
    results = run(QueryBatcher(prometheus), requests)
    assert numbers(results) == [Sample.of(v) for v in (1.0, 2.0, 1.0)]
    assert len(prometheus.queries) == 1


def test_concurrent_callers_within_the_window_share_one_batch() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0, "ccc": 3.0})

    async def callers() -> list[QueryResult]:
        batcher = QueryBatcher(prometheus, window=0.01)
        return list(
            await asyncio.gather(*(batcher.query(SUM, values(r)) for r in ("aaa", "bbb", "ccc")))
        )

    assert asyncio.run(callers()) == [
        labelled(r, v) for r, v in (("aaa", 1.0), ("bbb", 2.0), ("ccc", 3.0))
    ]
    assert prometheus.batched == ['sum by (revision)(rate(x{revision=~"aaa|bbb|ccc"}[1m]))']


def test_sample_is_the_query_read_as_one_number() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": {"0.1": 1.0, "+Inf": 2.0}})

    async def callers() -> list[Sample]:
        batcher = QueryBatcher(prometheus, window=0.01)
        return list(
            await asyncio.gather(
                batcher.sample(SUM, values("aaa")),
                batcher.sample(SUM, values("zzz")),
                batcher.sample(SUM, values("bbb")),
                batcher.sample('x{pod="{{pod}}"}', values("aaa")),
            )
        )

    number, no_data, several, broken = asyncio.run(callers())
    assert (number, no_data) == (Sample.of(1.0), Sample.of(None))
    assert "must return one series but returned 2" in (several.error or "")
    assert "invalid query template" in (broken.error or "")
    assert len(prometheus.queries) == 1


def test_a_caller_after_the_window_starts_a_new_batch() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})

    async def two_rounds() -> tuple[QueryResult, QueryResult]:
        batcher = QueryBatcher(prometheus, window=0.0)
        first = await batcher.query(SUM, values("aaa"))
        second = await batcher.query(SUM, values("bbb"))
        return first, second

    first, second = asyncio.run(two_rounds())
    assert (first.sample(), second.sample()) == (Sample.of(1.0), Sample.of(2.0))
    assert prometheus.singles == [render(SUM, values("aaa")), render(SUM, values("bbb"))]


def test_a_cancelled_caller_does_not_break_the_batch_for_the_others() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})

    async def one_gives_up() -> QueryResult:
        batcher = QueryBatcher(prometheus, window=0.01)
        leaving = asyncio.ensure_future(batcher.query(SUM, values("aaa")))
        staying = asyncio.ensure_future(batcher.query(SUM, values("bbb")))
        await asyncio.sleep(0)
        leaving.cancel()
        return await staying

    assert asyncio.run(one_gives_up()).sample() == Sample.of(2.0)
