"""Replicas running the claim planner against a simulated API server, in simulated time.

The API server keeps Leases with a resourceVersion and refuses a write whose
version is stale (409), as the real one does. Each replica's round is two
events: it reads every Lease at once (one LIST), plans, and its writes reach
the server ``latency`` later, while other replicas' events interleave. Each
replica has its own clock offset (its ``now`` is ``time + offset``), which the
protocol must not depend on; clocks run at the same rate (the stated
assumption). Ownership is checked after every event: it is gained only by an
accepted write, i.e. at an event, and between events it can only lapse, so two
owners of one shard at any moment would show right after some event.
"""

from __future__ import annotations

import heapq
import itertools
from dataclasses import dataclass, field
from typing import TypeVar

from modelcanary.shards.ownership import (
    Holdings,
    LeaseRecord,
    Memory,
    Plan,
    Sighting,
    Timing,
    start_round,
)

K = TypeVar("K")


@dataclass
class Replica:
    name: str
    offset: float
    alive: bool = True
    holdings: Holdings = field(default_factory=Holdings)
    shard_sightings: dict[int, Sighting] = field(default_factory=dict)
    presence_sightings: dict[str, Sighting] = field(default_factory=dict)
    pause_next: float = 0.0
    """Extra delay before the next round (a GC pause, a slow API server)."""
    next_read_at: float = 0.0


@dataclass
class PendingRound:
    replica: Replica
    shards_read: dict[int, LeaseRecord]
    presence_read: dict[str, LeaseRecord]
    plan: Plan


class Cluster:
    """The API server's Leases, the replicas, and the event queue."""

    def __init__(self, shards: int, timing: Timing, latency: float) -> None:
        self.shards = shards
        self.timing = timing
        self.latency = latency
        self.time = 0.0
        self.shard_leases: dict[int, LeaseRecord] = {}
        self.presence_leases: dict[str, LeaseRecord] = {}
        self.replicas: list[Replica] = []
        self._versions = itertools.count(1)
        self._queue: list[tuple[float, int, str, Replica, PendingRound | None]] = []
        self._order = itertools.count()
        self.max_owners_seen = 0
        self.shard_writes = 0
        """Shard Lease writes the server accepted (acquires, renewals, releases)."""
        self.ownership_gaps = 0
        """Events after which some shard had no owner (counted only when asked)."""
        self.count_gaps = False
        self.holders: dict[int, list[str]] = {}
        """Each shard's successive holders, in the order their acquires were accepted."""

    # ------------------------------------------------------------------ population

    def join(self, name: str, offset: float) -> Replica:
        replica = Replica(name, offset)
        self.replicas.append(replica)
        self._schedule(self.time, "read", replica, None)
        return replica

    def kill(self, replica: Replica) -> None:
        """SIGKILL: no release; a write already sent may still reach the server."""
        replica.alive = False

    def alive(self) -> list[Replica]:
        return [r for r in self.replicas if r.alive]

    # ------------------------------------------------------------------ queries

    def owned(self, replica: Replica) -> frozenset[int]:
        return replica.holdings.owned(self.time + replica.offset, self.timing)

    def owners(self) -> dict[int, list[str]]:
        by_shard: dict[int, list[str]] = {k: [] for k in range(self.shards)}
        for replica in self.alive():
            for k in self.owned(replica):
                by_shard[k].append(replica.name)
        return by_shard

    def counts(self) -> dict[str, int]:
        return {r.name: len(self.owned(r)) for r in self.alive()}

    def all_owned(self) -> bool:
        return all(len(names) == 1 for names in self.owners().values())

    # ------------------------------------------------------------------ running

    def run_until(self, end: float) -> None:
        assert end >= self.time, f"time runs forward: {end} < {self.time}"
        while self._queue and self._queue[0][0] <= end:
            when, _, kind, replica, pending = heapq.heappop(self._queue)
            self.time = when
            if kind == "read":
                self._read(replica)
            else:
                assert pending is not None
                self._write(pending)
            self._check()
        self.time = end

    def run_until_unpaused(self) -> None:
        """Until every pause asked for has been taken and is over."""
        while any(
            r.pause_next > 0 or r.next_read_at > self.time + self.timing.retry_period
            for r in self.alive()
        ):
            self.run_until(self.time + 0.1)

    def _schedule(
        self, when: float, kind: str, replica: Replica, pending: PendingRound | None
    ) -> None:
        if kind == "read":
            replica.next_read_at = when
        heapq.heappush(self._queue, (when, next(self._order), kind, replica, pending))

    def _check(self) -> None:
        most = max((len(names) for names in self.owners().values()), default=0)
        self.max_owners_seen = max(self.max_owners_seen, most)
        assert most <= 1, f"two owners at t={self.time:.2f}: {self.owners()}"
        if self.count_gaps and not self.all_owned():
            self.ownership_gaps += 1

    def _read(self, replica: Replica) -> None:
        if not replica.alive:
            return
        now = self.time + replica.offset
        shard_records = dict(self.shard_leases)
        presence = dict(self.presence_leases)
        memory, plan = start_round(
            replica.name,
            self.shards,
            Memory(replica.holdings, replica.shard_sightings, replica.presence_sightings),
            shard_records=shard_records,
            presence=presence,
            now=now,
            timing=self.timing,
        )
        # The holdings have dropped what is released and what another replica
        # now holds: it stops acting on those before any write is sent.
        replica.holdings = memory.holdings
        replica.shard_sightings = dict(memory.shard_sightings)
        replica.presence_sightings = dict(memory.presence_sightings)
        pending = PendingRound(replica, shard_records, presence, plan)
        self._schedule(self.time + self.latency, "write", replica, pending)

    def _write(self, pending: PendingRound) -> None:
        replica = pending.replica
        sent = self.time + replica.offset
        duration = self.timing.lease_duration
        # A replica killed after sending: the server still applies what was sent.
        me = replica.name
        _cas(
            self.presence_leases,
            pending.presence_read,
            me,
            holder=me,
            duration=duration,
            cluster=self,
        )
        for k in sorted(pending.plan.acquire | pending.plan.renew):
            if _cas(
                self.shard_leases,
                pending.shards_read,
                k,
                holder=me,
                duration=duration,
                cluster=self,
            ):
                replica.holdings = replica.holdings.renewed(k, sent)
            else:
                replica.holdings = replica.holdings.without({k})
        for k in sorted(pending.plan.release):
            _cas(self.shard_leases, pending.shards_read, k, holder=None, duration=1.0, cluster=self)
        if replica.alive:
            pause, replica.pause_next = replica.pause_next, 0.0
            self._schedule(self.time + self.timing.retry_period + pause, "read", replica, None)

    def next_version(self) -> str:
        return str(next(self._versions))


def _cas(
    leases: dict[K, LeaseRecord],
    read: dict[K, LeaseRecord],
    key: K,
    *,
    holder: str | None,
    duration: float,
    cluster: Cluster,
) -> bool:
    """Create or update ``key`` if it is still what the round read; False on a 409."""
    if leases.get(key) != read.get(key):
        return False
    leases[key] = LeaseRecord(holder, cluster.next_version(), duration)
    if isinstance(key, int):
        cluster.shard_writes += 1
        log = cluster.holders.setdefault(key, [])
        if holder is not None and (not log or log[-1] != holder):
            log.append(holder)
    return True
