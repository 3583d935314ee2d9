"""ShardManager rounds over a fake Lease store: stopping the loops of a lost shard
(which may take a grace of seconds) holds back the release of that shard, never the
renewals of the shards it keeps; a round's writes go out together; and a shard that
lapsed and was renewed is announced again, so what arrived in the lapse gets a loop."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from modelcanary.dispatch.loops import MODEL_DEPLOYMENT, Dispatcher, ObjectKey, ObjectLoop
from modelcanary.shards.leases import (
    REPLICA_PREFIX,
    SHARD_PREFIX,
    ShardManager,
    replica_lease_name,
    shard_lease_name,
)
from modelcanary.shards.ownership import Timing
from tests.unit.fake_kube import FakeKube
from tests.unit.shards.fake_leases import FakeLeases

pytestmark = pytest.mark.unit

TIMING = Timing(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)


def test_a_slow_stop_of_a_lost_shard_holds_back_its_release_not_the_renewals() -> None:
    async def test() -> None:
        store = FakeLeases()
        manager = ShardManager(FakeKube().api(), "ops", "a", shards=2, timing=TIMING)
        manager.store = store  # type: ignore[assignment]
        clock = [1000.0]
        manager.now = lambda: clock[0]  # type: ignore[method-assign]
        # Alone, "a" takes both shards.
        await manager.round()
        assert manager.owned() == {0, 1}
        # "b" joins: "a" keeps one shard and releases the other. Make the kept
        # one due for renewal by waiting out the renew interval.
        store.hold(replica_lease_name("b"), "b")
        clock[0] += TIMING.renew_interval
        seen_at_stop: list[list[tuple[str, str | None]]] = []
        stopping = asyncio.Event()

        async def on_change(gained: frozenset[int], lost: frozenset[int]) -> None:
            if lost:
                seen_at_stop.append(list(store.writes))
                stopping.set()
                await asyncio.sleep(0)  # a loop finishing its pass

        manager.on_change = on_change
        store.writes.clear()
        await manager.round()
        assert stopping.is_set()
        kept = next(iter(manager.owned()))
        released = 1 - kept
        # When the lost shard's loops were being stopped, the kept shard had been
        # renewed, and the released one not yet written free.
        assert (shard_lease_name(kept), "a") in seen_at_stop[0]
        assert (shard_lease_name(released), None) not in seen_at_stop[0]
        assert store.writes[-1] == (shard_lease_name(released), None)
        assert all(n.startswith((SHARD_PREFIX, REPLICA_PREFIX)) for n, _ in store.writes)

    asyncio.run(test())


class SlowLeases(FakeLeases):
    """Every write takes ``latency`` s, and how many are in flight at once is counted."""

    def __init__(self, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self.in_flight = 0
        self.most_in_flight = 0

    async def write(self, name: str, read: dict[str, Any] | None, **kwargs: Any) -> bool:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency)
            return await super().write(name, read, **kwargs)
        finally:
            self.in_flight -= 1


def test_a_rounds_writes_go_out_together_so_a_slow_api_server_does_not_lapse_the_shards() -> None:
    """In sequence, 1 presence + 4 claims at 0.3 s a write took 1.5 s a round: with a
    3 s lease (renewal due 1 s after a send, deadline 2 s) the renewals came late and
    shards lapsed on a loaded machine. Together a round costs one write's latency."""

    async def test() -> None:
        store = SlowLeases(latency=0.05)
        manager = ShardManager(FakeKube().api(), "ops", "a", shards=4, timing=TIMING)
        manager.store = store  # type: ignore[assignment]
        loop = asyncio.get_running_loop()
        started = loop.time()
        await manager.round()
        took = loop.time() - started
        assert manager.owned() == {0, 1, 2, 3}
        assert store.most_in_flight == 5  # the presence Lease and four shard claims
        assert took < 3 * store.latency, took

    asyncio.run(test())


class LateLeases(FakeLeases):
    """A shard's claim is answered ``late`` s of the fake clock after it was sent, as
    when a renewal waits behind a loaded event loop or API server."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__()
        self.clock = clock
        self.late = 0.0

    async def write(self, name: str, read: dict[str, Any] | None, **kwargs: Any) -> bool:
        if kwargs["purpose"] == "claim":
            self.clock[0] += self.late
        return await super().write(name, read, **kwargs)


def lapsing_manager() -> tuple[ShardManager, LateLeases, list[float]]:
    clock = [1000.0]
    store = LateLeases(clock)
    manager = ShardManager(FakeKube().api(), "ops", "a", shards=1, timing=TIMING)
    manager.store = store  # type: ignore[assignment]
    manager.now = lambda: clock[0]  # type: ignore[method-assign]
    return manager, store, clock


def test_a_shard_renewed_after_it_lapsed_is_announced_as_gained_again() -> None:
    async def test() -> None:
        manager, store, clock = lapsing_manager()
        heard: list[tuple[frozenset[int], frozenset[int]]] = []
        gained_zero = (frozenset({0}), frozenset[int]())

        async def on_change(gained: frozenset[int], lost: frozenset[int]) -> None:
            heard.append((gained, lost))

        manager.on_change = on_change
        await manager.round()
        assert heard == [gained_zero]
        # On time: a renewal changes nothing worth telling.
        clock[0] += TIMING.renew_interval
        await manager.round()
        assert heard == [gained_zero]
        # Sent when due, the renewal is answered after the renew deadline of the
        # send before: the shard lapsed meanwhile (owns() said no) and is held again.
        clock[0] += TIMING.renew_interval
        store.late = TIMING.renew_deadline - TIMING.renew_interval + 0.5
        await manager.round()
        assert manager.owned() == {0}
        assert heard == [gained_zero, gained_zero]
        # Announced once: the next renewal (due already) is on time and tells nothing.
        store.late = 0.0
        await manager.round()
        assert manager.owned() == {0}
        assert len(heard) == 2

    asyncio.run(test())


def test_an_object_first_seen_while_its_shard_lapsed_gets_its_loop_once_renewed() -> None:
    """One replica, 1,000 objects created at once: the renewal came 5 s late, the last
    11 objects arrived in the lapse, and none of them ever got a pass."""

    async def test() -> None:
        manager, _, clock = lapsing_manager()
        ran: list[ObjectKey] = []

        async def run(loop: ObjectLoop) -> None:
            ran.append(loop.key)

        dispatcher = Dispatcher(manager.owns, {MODEL_DEPLOYMENT: run})
        manager.on_change = dispatcher.ownership_changed
        await manager.round()
        clock[0] += TIMING.renew_deadline  # the next round is late: the shard lapses
        key = ObjectKey(MODEL_DEPLOYMENT, "ns", "late")
        dispatcher.observed(key, ("ns", "late"))
        await asyncio.sleep(0)
        assert ran == []  # not owned right now: no loop
        await manager.round()
        await asyncio.sleep(0)
        assert ran == [key]
        await dispatcher.close()

    asyncio.run(test())


def test_the_presence_lease_is_renewed_when_due_not_every_round() -> None:
    """Every round, the presence write was 30 of a replica's 72 requests a minute at
    rest; renewed a third of the duration after its last write, as a shard is, the
    others still see it live with the same margin."""

    async def test() -> None:
        clock = [1000.0]
        store = LateLeases(clock)
        manager = ShardManager(FakeKube().api(), "ops", "a", shards=1, timing=TIMING)
        manager.store = store  # type: ignore[assignment]
        manager.now = lambda: clock[0]  # type: ignore[method-assign]
        presence = (replica_lease_name("a"), "a")

        def presence_writes() -> int:
            return store.writes.count(presence)

        await manager.round()
        assert presence_writes() == 1
        clock[0] += TIMING.retry_period
        await manager.round()
        assert presence_writes() == 1  # not due yet
        clock[0] += TIMING.renew_interval - TIMING.retry_period
        await manager.round()
        assert presence_writes() == 2
        assert manager.owned() == {0}

    asyncio.run(test())
