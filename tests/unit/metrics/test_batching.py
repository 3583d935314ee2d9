"""Which query shapes batch, how they are rewritten, and how answers are split.

The rewrite tests pin the exact batched text for the shapes that batch, and the
reason for a sample of shapes that must not. The QueryBatcher tests replace
Prometheus with a fake at the network edge (a SeriesProvider answering from a
table per revision), which is enough to check grouping, splitting and every
fallback. tests/integration/test_prometheus_provider.py proves against the real
Prometheus that batched answers equal single ones.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence

import pytest

from modelcanary.analysis.samples import Sample
from modelcanary.analysis.templates import TemplateValues, render
from modelcanary.metrics import QueryResult, Series
from modelcanary.metrics.batching import (
    QueryBatcher,
    is_batchable_revision,
    revision_regex,
    rewrite,
)

pytestmark = pytest.mark.unit

ERROR_RATE = (
    'sum(rate(model_requests_total{namespace="{{namespace}}",revision="{{revision}}",'
    'code=~"5.."}[1m]))\n/ sum(rate(model_requests_total{namespace="{{namespace}}",'
    'revision="{{revision}}"}[1m]))'
)
P99 = (
    "histogram_quantile(0.99, sum by (le) "
    '(rate(model_request_duration_seconds_bucket{revision="{{revision}}"}[1m])))'
)


# --------------------------------------------------------------------------- rewrite


@pytest.mark.parametrize(
    ("template", "batched"),
    [
        pytest.param(
            ERROR_RATE,
            'sum by (revision)(rate(model_requests_total{namespace="{{namespace}}",'
            'revision=~"{{revision}}",code=~"5.."}[1m]))\n'
            '/ sum by (revision)(rate(model_requests_total{namespace="{{namespace}}",'
            'revision=~"{{revision}}"}[1m]))',
            id="ratio-of-sums",
        ),
        pytest.param(
            P99,
            "histogram_quantile(0.99, sum by (le, revision) "
            '(rate(model_request_duration_seconds_bucket{revision=~"{{revision}}"}[1m])))',
            id="histogram-quantile",
        ),
        pytest.param(
            'sum(increase(model_requests_total{revision="{{revision}}"}[1m]))',
            'sum by (revision)(increase(model_requests_total{revision=~"{{revision}}"}[1m]))',
            id="min-samples",
        ),
        pytest.param(
            'sum(rate(x{revision="{{revision}}"}[1m])) by (code)',
            'sum(rate(x{revision=~"{{revision}}"}[1m])) by (code, revision)',
            id="trailing-by",
        ),
        pytest.param(
            'avg by () (x{revision="{{revision}}"})',
            'avg by (revision) (x{revision=~"{{revision}}"})',
            id="empty-by",
        ),
        pytest.param(
            'max by (revision) (x{revision="{{revision}}"})',
            'max by (revision) (x{revision=~"{{revision}}"})',
            id="already-by-revision",
        ),
        pytest.param(
            'min without (instance) (x{revision="{{revision}}"})',
            'min without (instance) (x{revision=~"{{revision}}"})',
            id="without-keeps-revision",
        ),
        pytest.param(
            'COUNT(x{revision="{{ revision }}"}) * 100',
            'COUNT by (revision)(x{revision=~"{{ revision }}"}) * 100',
            id="keyword-case-and-scalar",
        ),
        pytest.param(
            'x{revision="{{revision}}"}',
            'x{revision=~"{{revision}}"}',
            id="bare-selector",
        ),
        pytest.param(
            'max_over_time(x{job="a",revision="{{revision}}"}[5m] offset 1m) > 0.5',
            'max_over_time(x{job="a",revision=~"{{revision}}"}[5m] offset 1m) > 0.5',
            id="offset-and-comparison",
        ),
        pytest.param(
            'sum(rate(a{revision="{{revision}}"}[1m])) / on() '
            'sum(rate(b{revision="{{revision}}"}[1m]))',
            'sum by (revision)(rate(a{revision=~"{{revision}}"}[1m])) / on(revision) '
            'sum by (revision)(rate(b{revision=~"{{revision}}"}[1m]))',
            id="on-empty",
        ),
        pytest.param(
            'sum by (code) (a{revision="{{revision}}"}) / on(code) '
            'sum by (code) (b{revision="{{revision}}"})',
            'sum by (code, revision) (a{revision=~"{{revision}}"}) / on(code, revision) '
            'sum by (code, revision) (b{revision=~"{{revision}}"})',
            id="on-labels",
        ),
        pytest.param(
            'rate(a{revision="{{revision}}"}[1m]) / ignoring(code) '
            'rate(b{revision="{{revision}}"}[1m])',
            'rate(a{revision=~"{{revision}}"}[1m]) / ignoring(code) '
            'rate(b{revision=~"{{revision}}"}[1m])',
            id="ignoring",
        ),
        pytest.param(
            'sum(a{revision="{{revision}}"}) and sum(b{revision="{{revision}}"}) > bool 0',
            'sum by (revision)(a{revision=~"{{revision}}"}) and '
            'sum by (revision)(b{revision=~"{{revision}}"}) > bool 0',
            id="set-operator",
        ),
        pytest.param(
            'clamp_max(round(-sum(a{revision="{{revision}}"}) ^ 2, 0.1), 10)',
            'clamp_max(round(-sum by (revision)(a{revision=~"{{revision}}"}) ^ 2, 0.1), 10)',
            id="series-functions",
        ),
        pytest.param(
            "quantile_over_time(0.9, x{revision='{{revision}}'}[5m]) # p90 of {{revision}}",
            "quantile_over_time(0.9, x{revision=~'{{revision}}'}[5m]) # p90 of {{revision}}",
            id="single-quotes-and-comment",
        ),
    ],
)
def test_batchable_shapes_are_rewritten(template: str, batched: str) -> None:
    plan = rewrite(template)
    assert plan.reason is None
    assert plan.batched == batched


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        pytest.param(
            'sum(rate(x{revision="{{revision}}"}[1m])) / sum(rate(x[1m]))',
            "without exactly one matcher",
            id="selector-without-revision",
        ),
        pytest.param(
            'x{revision="{{revision}}", revision!="x"}',
            "without exactly one matcher",
            id="two-revision-matchers",
        ),
        pytest.param('x{revision=~"{{revision}}"}', "other than", id="regex-revision"),
        pytest.param('x{revision="{{revision}}-b"}', "other than", id="revision-with-suffix"),
        pytest.param('x{revision="abc"}', "other than", id="literal-revision"),
        pytest.param(
            'x{revision="{{revision}}", pod=~".*{{revision}}.*"}',
            "elsewhere",
            id="revision-in-another-matcher",
        ),
        pytest.param(
            'sum(x{revision="{{revision}}"}) or vector(0)', "vector(scalar)", id="or-vector"
        ),
        pytest.param(
            'scalar(sum(x{revision="{{revision}}"}))', "scalar(vector)", id="scalar-function"
        ),
        pytest.param(
            'absent(x{revision="{{revision}}"})', "absent(vector)", id="absent-makes-labels"
        ),
        pytest.param(
            'label_replace(x{revision="{{revision}}"}, "revision", "x", "", "")',
            "label_replace",
            id="label-replace",
        ),
        pytest.param('topk(1, x{revision="{{revision}}"})', "topk", id="topk"),
        pytest.param('stddev(x{revision="{{revision}}"})', "stddev", id="stddev"),
        pytest.param(
            'sum without (revision) (x{revision="{{revision}}"})',
            "without(revision)",
            id="without-revision",
        ),
        pytest.param(
            'sum by (revision) (a{revision="{{revision}}"}) / sum(b{revision="{{revision}}"})',
            "differ in whether they keep the revision label",
            id="mixed-revision-label",
        ),
        pytest.param(
            'a{revision="{{revision}}"} / on() sum(b{revision="{{revision}}"})',
            "differ in whether they keep the revision label",
            id="series-against-sum",
        ),
        pytest.param(
            'a{revision="{{revision}}"} / ignoring(revision) b{revision="{{revision}}"}',
            "ignoring(revision)",
            id="ignoring-revision",
        ),
        pytest.param(
            'a{revision="{{revision}}"} * on(instance) group_left b{revision="{{revision}}"}',
            "group_left",
            id="group-left",
        ),
        pytest.param(
            'max_over_time(sum(x{revision="{{revision}}"})[5m:1m])',
            "subquer",
            id="subquery",
        ),
        pytest.param('x{revision="{{revision}}"} @ 100', "@ modifier", id="at-modifier"),
        pytest.param('x{revision="{{revision}}"}[5m]', "range vector", id="range-result"),
        pytest.param("sum(rate(x[1m]))", "without exactly one matcher", id="no-revision-at-all"),
        pytest.param("1 + 1", "returns a scalar", id="scalar-query"),
        pytest.param(
            '{{model}}_total{revision="{{revision}}"}', "outside a string", id="code-placeholder"
        ),
        pytest.param('sum(rate(x{revision="{{revision}}"}[1m])', "expected ')'", id="unclosed"),
        pytest.param('x{"revision"="{{revision}}"}', "expected a name", id="quoted-label"),
        pytest.param(
            'x{revision="{{revision}}"} + time()', "time() is not known", id="time-function"
        ),
    ],
)
def test_unbatchable_shapes_run_singly(template: str, reason: str) -> None:
    plan = rewrite(template)
    assert plan.batched is None
    assert plan.reason is not None
    assert reason in plan.reason


def test_revision_regex_escapes_regex_syntax() -> None:
    assert revision_regex(["6f9c0a1b2c", "v1.2", "a+b"]) == r"6f9c0a1b2c|v1\.2|a\+b"
    pattern = re.compile(r"\A(?:" + revision_regex(["v1.2", "x"]) + r")\Z")
    assert pattern.match("v1.2")
    assert not pattern.match("v1x2")


@pytest.mark.parametrize(
    ("revision", "batchable"),
    [("6f9c0a1b2c", True), ("v1.2-rc_1", True), ("", False), ("a|b", False), ('a"', False)],
)
def test_only_plain_revisions_are_batched(revision: str, batchable: bool) -> None:
    assert is_batchable_revision(revision) is batchable


# --------------------------------------------------------------------------- batcher


class FakePrometheus:
    """Answers any query from a table of values per revision, as Prometheus would.

    A query with ``revision="r"`` gets one unlabelled series with r's value; one
    with ``revision=~"r1|r2"`` gets one series per revision, labelled with it.
    Revisions absent from the table have no data.
    """

    def __init__(self, values: dict[str, float]) -> None:
        self.values = values
        self.queries: list[str] = []
        self.batch_answer: QueryResult | None = None

    async def query_series(self, query: str) -> QueryResult:
        self.queries.append(query)
        await asyncio.sleep(0)  # a real provider yields to the loop
        if "revision=~" in query:
            if self.batch_answer is not None:
                return self.batch_answer
            alternation = re.search(r'revision=~"([^"]*)"', query)
            assert alternation is not None
            revisions = alternation.group(1).replace("\\\\", "\\").split("|")
            return QueryResult(
                series=tuple(
                    Series({"revision": r}, self.values[r]) for r in revisions if r in self.values
                )
            )
        single = re.search(r'revision="([^"]*)"', query)
        assert single is not None
        revision = single.group(1)
        if revision not in self.values:
            return QueryResult()
        return QueryResult(series=(Series({}, self.values[revision]),))

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


def run(batcher: QueryBatcher, requests: Sequence[tuple[str, TemplateValues]]) -> list[Sample]:
    return asyncio.run(batcher.run(requests))


def test_revisions_sharing_a_template_take_one_query_and_get_their_own_values() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0, "ccc": 3.0})
    samples = run(QueryBatcher(prometheus), [(SUM, values(r)) for r in ("ccc", "aaa", "bbb")])
    assert samples == [Sample.of(3.0), Sample.of(1.0), Sample.of(2.0)]
    assert prometheus.batched == ['sum by (revision)(rate(x{revision=~"aaa|bbb|ccc"}[1m]))']
    assert prometheus.singles == []


def test_a_revision_missing_from_the_batched_answer_has_no_data() -> None:
    prometheus = FakePrometheus({"aaa": 1.0})
    samples = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("zzz"))])
    assert samples == [Sample.of(1.0), Sample.of(None)]
    assert len(prometheus.queries) == 1


def test_nan_in_a_batched_answer_is_no_data_for_that_revision_only() -> None:
    prometheus = FakePrometheus({"aaa": float("nan"), "bbb": 2.0})
    samples = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    assert samples == [Sample.of(None), Sample.of(2.0)]


def test_a_lone_revision_runs_the_query_exactly_as_written() -> None:
    prometheus = FakePrometheus({"aaa": 1.0})
    assert run(QueryBatcher(prometheus), [(SUM, values("aaa"))]) == [Sample.of(1.0)]
    assert prometheus.queries == [render(SUM, values("aaa"))]


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
    samples = run(QueryBatcher(prometheus), requests)
    assert samples == [Sample.of(v) for v in (1.0, 2.0, 3.0, 4.0, 1.0, 3.0)]
    assert sorted(prometheus.batched) == [
        'sum by (revision)(rate(x{namespace="team-a",revision=~"a1|a2"}[1m]))',
        'sum by (revision)(rate(x{namespace="team-b",revision=~"b1|b2"}[1m]))',
        'sum by (revision)(rate(x{revision=~"a1|b1"}[1m]))',
    ]


def test_a_large_group_is_split_into_bounded_batches() -> None:
    revisions = [f"r{i:02d}" for i in range(7)]
    prometheus = FakePrometheus({r: float(i) for i, r in enumerate(revisions)})
    samples = run(QueryBatcher(prometheus, max_revisions=3), [(SUM, values(r)) for r in revisions])
    assert samples == [Sample.of(float(i)) for i in range(7)]
    # 3 + 3 + 1: the last revision alone runs its own query.
    assert len(prometheus.batched) == 2
    assert prometheus.singles == [render(SUM, values("r06"))]


def test_unbatchable_templates_run_singly_and_identical_queries_run_once() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    template = 'sum(rate(x{revision="{{revision}}"}[1m])) or vector(0)'
    samples = run(
        QueryBatcher(prometheus),
        [(template, values("aaa")), (template, values("bbb")), (template, values("aaa"))],
    )
    assert samples == [Sample.of(1.0), Sample.of(2.0), Sample.of(1.0)]
    assert sorted(prometheus.queries) == sorted(
        {render(template, values("aaa")), render(template, values("bbb"))}
    )


def test_a_revision_that_is_not_plain_runs_singly() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "b|c": 2.0})
    samples = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("b|c"))])
    assert samples == [Sample.of(1.0), Sample.of(2.0)]
    assert prometheus.batched == []


def test_a_batch_prometheus_rejects_falls_back_to_single_queries() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    prometheus.batch_answer = QueryResult.failed("too many samples", rejected=True)
    samples = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    assert samples == [Sample.of(1.0), Sample.of(2.0)]
    assert len(prometheus.batched) == 1
    assert sorted(prometheus.singles) == [render(SUM, values(r)) for r in ("aaa", "bbb")]


def test_an_outage_is_every_revisions_error_without_retrying_singly() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    prometheus.batch_answer = QueryResult.failed("connection refused")
    samples = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    assert samples == [Sample.failed("connection refused")] * 2
    assert prometheus.singles == []


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
    samples = run(QueryBatcher(prometheus), [(SUM, values("aaa")), (SUM, values("bbb"))])
    # The single queries' values, not the suspicious batch's.
    assert samples == [Sample.of(1.0), Sample.of(2.0)]
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
    samples = run(QueryBatcher(prometheus), [(template, values("aaa")), (template, values("bbb"))])
    assert samples[0].is_error
    assert "returned 2" in (samples[0].error or "")
    assert 'code="500"' in (samples[0].error or "")
    assert samples[1] == Sample.of(3.0)


def test_a_broken_template_is_an_error_sample_and_does_not_stop_the_others() -> None:
    prometheus = FakePrometheus({"aaa": 1.0})
    samples = run(
        QueryBatcher(prometheus), [('x{pod="{{pod}}"}', values("aaa")), (SUM, values("aaa"))]
    )
    assert samples[0].is_error
    assert "{{pod}}" in (samples[0].error or "")
    assert samples[1] == Sample.of(1.0)


def test_the_same_request_twice_gets_the_same_answer_from_one_query() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})
    requests = [(SUM, values("aaa")), (SUM, values("bbb")), (SUM, values("aaa"))]
    assert run(QueryBatcher(prometheus), requests) == [Sample.of(v) for v in (1.0, 2.0, 1.0)]
    assert len(prometheus.queries) == 1


def test_concurrent_callers_within_the_window_share_one_batch() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0, "ccc": 3.0})

    async def callers() -> list[Sample]:
        batcher = QueryBatcher(prometheus, window=0.01)
        return list(
            await asyncio.gather(*(batcher.query(SUM, values(r)) for r in ("aaa", "bbb", "ccc")))
        )

    assert asyncio.run(callers()) == [Sample.of(1.0), Sample.of(2.0), Sample.of(3.0)]
    assert prometheus.batched == ['sum by (revision)(rate(x{revision=~"aaa|bbb|ccc"}[1m]))']


def test_a_caller_after_the_window_starts_a_new_batch() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})

    async def two_rounds() -> tuple[Sample, Sample]:
        batcher = QueryBatcher(prometheus, window=0.0)
        first = await batcher.query(SUM, values("aaa"))
        second = await batcher.query(SUM, values("bbb"))
        return first, second

    assert asyncio.run(two_rounds()) == (Sample.of(1.0), Sample.of(2.0))
    assert prometheus.singles == [render(SUM, values("aaa")), render(SUM, values("bbb"))]


def test_a_cancelled_caller_does_not_break_the_batch_for_the_others() -> None:
    prometheus = FakePrometheus({"aaa": 1.0, "bbb": 2.0})

    async def one_gives_up() -> Sample:
        batcher = QueryBatcher(prometheus, window=0.01)
        leaving = asyncio.ensure_future(batcher.query(SUM, values("aaa")))
        staying = asyncio.ensure_future(batcher.query(SUM, values("bbb")))
        await asyncio.sleep(0)
        leaving.cancel()
        return await staying

    assert asyncio.run(one_gives_up()) == Sample.of(2.0)
