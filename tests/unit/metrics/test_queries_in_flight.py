"""Concurrent passes share a batched query in flight at one instant (issue 15).

Passes run concurrently (``--max-concurrent-passes``), so the second pass of a
grid instant often asks while the first pass's query for that instant has not
answered yet, and nothing is kept to serve it. These tests start several
``run``s at one instant together, as concurrent passes do, over a fake
Prometheus that holds its answers until released, and count its queries.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from modelcanary.analysis.samples import Sample
from modelcanary.metrics import QueryResult, Series
from modelcanary.metrics.batching import QueryBatcher
from tests.unit.metrics.test_batching import SUM, FakePrometheus, values

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(seconds=15)
STABLE = "s"
CANARIES = [f"r{n}" for n in range(1, 9)]
WAIT = 5.0
"""Seconds any test waits for its passes; they finish in milliseconds unless one hangs."""


class HeldPrometheus(FakePrometheus):
    """Answers only once released, so that every pass asks while a query is in flight."""

    def __init__(self) -> None:
        super().__init__({STABLE: 1.0, **{c: float(n) for n, c in enumerate(CANARIES, 2)}})
        self.released = asyncio.Event()

    async def query_series(self, query: str, *, at: datetime | None = None) -> QueryResult:
        await self.released.wait()
        return await super().query_series(query, at=at)


async def let_them_ask() -> None:
    """Lets every started pass run until it waits: on Prometheus, or on a query in flight.

    A pass is a task whose jobs are tasks of their own, so a few turns of the loop."""
    for _ in range(5):
        await asyncio.sleep(0)


def expected(canary: str) -> list[Sample]:
    return [Sample.of(float(CANARIES.index(canary) + 2)), Sample.of(1.0)]


async def look(batcher: QueryBatcher, canary: str, at: datetime) -> list[Sample]:
    """One canary's pass: its candidate and the shared stable, under one query shape."""
    requests = [(SUM, values(canary)), (SUM, values(STABLE))]
    return [result.sample() for result in await batcher.run(requests, at=at)]


async def concurrent_passes(
    prometheus: HeldPrometheus, batcher: QueryBatcher, at: datetime
) -> list[list[Sample]]:
    """Every canary's pass at ``at``, all started before Prometheus answers any."""
    passes = [asyncio.ensure_future(look(batcher, canary, at)) for canary in CANARIES]
    await let_them_ask()
    prometheus.released.set()
    return list(await asyncio.wait_for(asyncio.gather(*passes), WAIT))


def test_concurrent_passes_at_one_instant_share_the_query_in_flight() -> None:
    prometheus = HeldPrometheus()
    batcher = QueryBatcher(prometheus)

    async def two_instants() -> list[list[Sample]]:
        prometheus.released.set()
        for canary in CANARIES:  # the previous instant: every canary asked once
            await look(batcher, canary, T0)
        prometheus.released.clear()
        prometheus.queries.clear()
        return await concurrent_passes(prometheus, batcher, T1)

    looks = asyncio.run(two_instants())
    assert looks == [expected(canary) for canary in CANARIES]
    # The first pass asks for every revision asked at T0; the other seven wait on it.
    assert len(prometheus.queries) == 1
    assert prometheus.instants[-1] == T1


def test_a_query_in_flight_serves_its_instant_only() -> None:
    prometheus = HeldPrometheus()
    batcher = QueryBatcher(prometheus)

    async def two_instants_at_once() -> list[list[Sample]]:
        at_t0 = asyncio.ensure_future(look(batcher, "r1", T0))
        at_t1 = asyncio.ensure_future(look(batcher, "r1", T1))
        await let_them_ask()
        prometheus.released.set()
        return list(await asyncio.wait_for(asyncio.gather(at_t0, at_t1), WAIT))

    assert asyncio.run(two_instants_at_once()) == [expected("r1"), expected("r1")]
    assert sorted(prometheus.instants, key=str) == [T0, T1]


def test_an_outage_in_flight_is_every_waiting_pass_answer_without_more_queries() -> None:
    prometheus = HeldPrometheus()
    prometheus.batch_answer = QueryResult.failed("Prometheus did not answer within 5s")
    batcher = QueryBatcher(prometheus)

    async def same_canary_twice() -> list[list[Sample]]:
        passes = [asyncio.ensure_future(look(batcher, "r1", T1)) for _ in range(3)]
        await let_them_ask()
        prometheus.released.set()
        return list(await asyncio.wait_for(asyncio.gather(*passes), WAIT))

    looks = asyncio.run(same_canary_twice())
    assert all(sample.is_error for samples in looks for sample in samples)
    assert len(prometheus.queries) == 1


def test_a_distrusted_batch_in_flight_sends_the_waiting_passes_to_ask_singly() -> None:
    prometheus = HeldPrometheus()
    prometheus.batch_answer = QueryResult(series=(Series({"revision": "other"}, 7.0),))
    batcher = QueryBatcher(prometheus)

    async def same_canary_twice() -> list[list[Sample]]:
        passes = [asyncio.ensure_future(look(batcher, "r1", T1)) for _ in range(2)]
        await let_them_ask()
        prometheus.released.set()
        return list(await asyncio.wait_for(asyncio.gather(*passes), WAIT))

    assert asyncio.run(same_canary_twice()) == [expected("r1"), expected("r1")]
    assert len(prometheus.batched) == 1  # the waiting pass did not batch again
    assert len(prometheus.singles) == 4  # each pass's two revisions, singly


def test_a_cancelled_pass_does_not_leave_the_passes_waiting_on_its_query() -> None:
    prometheus = HeldPrometheus()
    batcher = QueryBatcher(prometheus)

    async def first_gives_up() -> list[Sample]:
        leaving = asyncio.ensure_future(look(batcher, "r1", T1))
        await let_them_ask()  # its batch is in flight
        staying = asyncio.ensure_future(look(batcher, "r1", T1))
        await let_them_ask()  # waiting on it
        leaving.cancel()
        await let_them_ask()
        prometheus.released.set()
        return await asyncio.wait_for(staying, WAIT)

    assert asyncio.run(first_gives_up()) == expected("r1")


def test_a_waiting_pass_that_gives_up_does_not_cancel_the_query_for_the_others() -> None:
    prometheus = HeldPrometheus()
    batcher = QueryBatcher(prometheus)

    async def one_waiting_pass_gives_up() -> list[list[Sample]]:
        asking = asyncio.ensure_future(look(batcher, "r1", T1))
        await let_them_ask()
        leaving, staying = (asyncio.ensure_future(look(batcher, "r1", T1)) for _ in range(2))
        await let_them_ask()
        leaving.cancel()
        await let_them_ask()
        prometheus.released.set()
        return list(await asyncio.wait_for(asyncio.gather(asking, staying), WAIT))

    assert asyncio.run(one_waiting_pass_gives_up()) == [expected("r1"), expected("r1")]
    assert len(prometheus.queries) == 1
