"""Answers kept per (batched query, instant of the look grid): issue 15's O(shapes).

Canaries with one look period look at the same instants, but their passes run one
after another; these tests ask at one instant in separate runs, as those passes
do, over the fake Prometheus of test_batching, and count the queries it gets.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from modelcanary.analysis.samples import Sample
from modelcanary.metrics import QueryResult, Series, batching
from modelcanary.metrics.batching import QueryBatcher
from tests.unit.metrics.test_batching import SUM, FakePrometheus, values

pytestmark = pytest.mark.unit

T1 = datetime(2026, 11, 23, 12, 0, 15, tzinfo=UTC)
T2 = T1 + timedelta(seconds=15)
STABLE = "s"
CANARIES = ["r1", "r2", "r3", "r4", "r5"]


def look(batcher: QueryBatcher, canary: str, at: datetime | None) -> list[Sample]:
    """One canary's look: its candidate and the shared stable, under one query shape."""
    requests = [(SUM, values(canary)), (SUM, values(STABLE))]
    return [result.sample() for result in asyncio.run(batcher.run(requests, at=at))]


def every_canary_looks(batcher: QueryBatcher, at: datetime) -> list[list[Sample]]:
    return [look(batcher, canary, at) for canary in CANARIES]


def table() -> dict[str, float | dict[str, float]]:
    return {STABLE: 1.0, **{canary: float(n) for n, canary in enumerate(CANARIES, 2)}}


def test_the_second_instant_costs_one_query_whatever_the_number_of_canaries() -> None:
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus)
    every_canary_looks(batcher, T1)
    # The first instant knows no history: one batch, then one query per new canary.
    assert len(prometheus.queries) == len(CANARIES)
    prometheus.queries.clear()
    looks = every_canary_looks(batcher, T2)
    assert len(prometheus.queries) == 1
    assert looks == [[Sample.of(float(n)), Sample.of(1.0)] for n, _ in enumerate(CANARIES, 2)]


def test_each_query_is_evaluated_at_its_instant() -> None:
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus)
    look(batcher, "r1", T1)
    look(batcher, "r1", None)
    assert prometheus.instants == [T1, None]


def test_an_answer_is_kept_for_its_instant_only() -> None:
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus)
    look(batcher, "r1", T1)
    prometheus.values = {**table(), "r1": 9.0}
    assert look(batcher, "r1", T1) == [Sample.of(2.0), Sample.of(1.0)]
    assert look(batcher, "r1", T2) == [Sample.of(9.0), Sample.of(1.0)]


def test_looks_without_an_instant_keep_nothing() -> None:
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus)
    look(batcher, "r1", None)
    look(batcher, "r1", None)
    assert len(prometheus.queries) == 2


def test_a_revision_not_asked_before_gets_its_own_query() -> None:
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus)
    look(batcher, "r1", T1)
    look(batcher, "r1", T2)
    prometheus.queries.clear()
    assert look(batcher, "r2", T2) == [Sample.of(3.0), Sample.of(1.0)]
    assert prometheus.queries == ['sum(rate(x{revision="r2"}[1m]))']


def test_a_batch_with_an_unknown_revision_is_not_kept() -> None:
    prometheus = FakePrometheus(table())
    prometheus.batch_answer = QueryResult(series=(Series({"revision": "other"}, 7.0),))
    batcher = QueryBatcher(prometheus)
    assert look(batcher, "r1", T1) == [Sample.of(2.0), Sample.of(1.0)]
    prometheus.queries.clear()
    look(batcher, "r1", T1)
    assert len(prometheus.singles) == 2  # distrusted again, asked singly again


def test_an_outage_is_not_retried_singly_nor_kept() -> None:
    prometheus = FakePrometheus(table())
    prometheus.batch_answer = QueryResult.failed("Prometheus did not answer within 5s")
    batcher = QueryBatcher(prometheus)
    first = look(batcher, "r1", T1)
    assert all(sample.is_error for sample in first)
    assert prometheus.singles == []
    prometheus.batch_answer = None
    assert look(batcher, "r1", T1) == [Sample.of(2.0), Sample.of(1.0)]


def test_kept_answers_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(batching, "ANSWERS_KEPT", 2)
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus)
    for step in range(5):
        look(batcher, "r1", T1 + step * timedelta(seconds=15))
    prometheus.queries.clear()
    look(batcher, "r1", T1)  # long forgotten: asked again
    assert len(prometheus.queries) == 1


class CountingOnlineChecks(FakePrometheus):
    def __init__(self) -> None:
        super().__init__(table())
        self.online_checks = 0

    async def is_online(self) -> bool:
        self.online_checks += 1
        await asyncio.sleep(0)
        return True


def test_one_online_check_per_instant() -> None:
    prometheus = CountingOnlineChecks()
    batcher = QueryBatcher(prometheus)

    async def looks() -> list[bool]:
        at_t1 = [batcher.is_online(T1) for _ in CANARIES]
        return list(await asyncio.gather(*at_t1, batcher.is_online(T2), batcher.is_online(T1)))

    assert all(asyncio.run(looks()))
    assert prometheus.online_checks == 2


def test_requests_in_one_window_are_asked_at_their_own_instants() -> None:
    prometheus = FakePrometheus(table())
    batcher = QueryBatcher(prometheus, window=0)

    async def both() -> list[QueryResult]:
        return list(
            await asyncio.gather(
                batcher.query(SUM, values("r1"), at=T1), batcher.query(SUM, values("r2"), at=T2)
            )
        )

    results = asyncio.run(both())
    assert [result.sample() for result in results] == [Sample.of(2.0), Sample.of(3.0)]
    assert sorted(prometheus.instants, key=str) == [T1, T2]
