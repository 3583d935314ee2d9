"""The Lease rounds on a thread of their own: a busy event loop does not lapse the
shards, the announcements run on the operator's loop, and the stop keeps its order.

The event loop is held with ``time.sleep``, as a loop busy with a thousand loops'
passes holds it: no task on it runs meanwhile, a thread does.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

from modelcanary.shards.leases import (
    LeaseStore,
    ShardManager,
    replica_lease_name,
    shard_lease_name,
)
from modelcanary.shards.ownership import Timing
from modelcanary.shards.thread import LeaseThread
from tests.unit.fake_kube import FakeKube
from tests.unit.shards.fake_leases import FakeLeases

pytestmark = pytest.mark.unit

TIMING = Timing(lease_duration=3.0, renew_deadline=2.0, retry_period=0.5)
HELD = 2.5 * TIMING.renew_deadline
"""How long a test holds the event loop: well past a renew deadline."""
WAIT = 10.0


def hold_the_loop() -> None:
    """Block the event loop, as a thousand loops' passes in a row would."""
    time.sleep(HELD)


def manager_over(store: FakeLeases) -> ShardManager:
    manager = ShardManager(FakeKube().api(), "ops", "a", shards=1, timing=TIMING)
    manager.store = store  # type: ignore[assignment]
    return manager


def making(store: FakeLeases) -> Any:
    async def make() -> LeaseStore:
        return store  # type: ignore[return-value]

    return make


class Announcements:
    """What ``on_change`` heard, and on which thread."""

    def __init__(self) -> None:
        self.heard: list[tuple[frozenset[int], frozenset[int]]] = []
        self.threads: set[threading.Thread] = set()
        self.gained = asyncio.Event()

    async def __call__(self, gained: frozenset[int], lost: frozenset[int]) -> None:
        self.heard.append((gained, lost))
        self.threads.add(threading.current_thread())
        if gained:
            self.gained.set()


async def holding_the_shard() -> tuple[FakeLeases, ShardManager, Announcements, LeaseThread]:
    """A Lease thread started on this loop, once its first round has taken the shard."""
    store = FakeLeases()
    manager = manager_over(store)
    announcements = Announcements()
    manager.on_change = announcements
    leases = LeaseThread(manager, making(store))
    leases.start()
    await asyncio.wait_for(announcements.gained.wait(), timeout=WAIT)
    return store, manager, announcements, leases


def test_on_the_event_loop_a_held_loop_lapses_the_shard() -> None:
    """What the thread is for: the same rounds as a task of the held loop fall behind."""

    async def test() -> None:
        manager = manager_over(FakeLeases())
        announcements = Announcements()
        manager.on_change = announcements
        rounds = asyncio.create_task(manager.run())
        await asyncio.wait_for(announcements.gained.wait(), timeout=WAIT)
        hold_the_loop()
        assert manager.owned() == set()
        rounds.cancel()

    asyncio.run(test())


def test_on_a_thread_of_their_own_a_held_loop_does_not_lapse_the_shard() -> None:
    async def test() -> None:
        store, manager, announcements, leases = await holding_the_shard()
        renewals_before = len(store.writes)
        hold_the_loop()
        assert manager.owned() == {0}
        assert len(store.writes) > renewals_before  # renewed while the loop was held
        # The announcement ran on this loop's thread, not the Lease thread.
        assert announcements.threads == {threading.main_thread()}
        await asyncio.wait_for(leases.release(), timeout=WAIT)
        assert (shard_lease_name(0), None) in store.writes[-2:]
        assert manager.owned() == set()
        assert announcements.heard[-1] == (frozenset(), frozenset({0}))

    asyncio.run(test())


def test_the_stop_ends_the_rounds_before_the_leases_are_written_free() -> None:
    async def test() -> None:
        store, _, _, leases = await holding_the_shard()
        await asyncio.wait_for(leases.stop_rounds(), timeout=WAIT)
        writes = list(store.writes)
        await asyncio.sleep(4 * TIMING.retry_period)
        assert store.writes == writes  # no round since
        assert (shard_lease_name(0), None) not in writes
        await asyncio.wait_for(leases.release(), timeout=WAIT)
        # Everything held is written free at once: the shard and the presence Lease.
        assert set(store.writes[len(writes) :]) == {
            (shard_lease_name(0), None),
            (replica_lease_name("a"), None),
        }
        assert leases._thread is not None
        assert not leases._thread.is_alive()

    asyncio.run(test())


def test_a_lease_thread_that_cannot_start_neither_holds_nor_hangs_the_stop(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def test() -> None:
        manager = manager_over(FakeLeases())

        async def unreachable() -> LeaseStore:
            raise OSError("no API server")

        leases = LeaseThread(manager, unreachable)
        leases.start()
        await asyncio.wait_for(leases.stop_rounds(), timeout=WAIT)
        await asyncio.wait_for(leases.release(), timeout=WAIT)
        assert manager.owned() == set()

    asyncio.run(test())
    assert "the Lease thread ended" in caplog.text
