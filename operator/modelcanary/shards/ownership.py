"""Which replica owns which ModelDeployments: the shard of an object, and the claim planner.

Pure: no kopf, no kr8s, no HTTP, no clock of its own. Every function takes
``now`` from its caller (a monotonic clock in :mod:`modelcanary.shards.leases`),
so the rules below are property-tested with simulated replicas and time.

The objects are split into ``shards`` by a stable hash of ``namespace/name``;
shard ``k`` is held through one Lease. Each round a replica reads every Lease
(the shards', and one presence Lease per replica) and :func:`plan_claims` says
which shard Leases to acquire, renew and release. Two rules keep two replicas
off one object, whatever the planner decides:

* a Lease changes hands only by a write that carries the resourceVersion its
  writer read, so of two replicas going for one shard, one gets a 409;
* a replica acts on a shard only while :meth:`Holdings.owned` says so: for
  ``renew_deadline`` after it *sent* its last successful acquire or renew,
  while others wait a full ``lease_duration`` after they *saw* that write
  before they take the shard.

The clock assumption, as in client-go's leader election: nobody compares
timestamps across machines. A Lease's ``renewTime`` is for people; expiry is
judged by each observer from when it first saw the Lease's current
resourceVersion, on its own monotonic clock. The holder sent its write before
anyone could see it, so it stops acting at ``sent + renew_deadline`` while an
observer takes over at ``seen + lease_duration`` or later: safe for any clock
offsets, as long as the clocks *run* at nearly the same rate (a holder whose
clock is slower by more than ``1 - renew_deadline / lease_duration``, a third
with the defaults, could overrun). A process paused past its deadline is
covered too: it checks :meth:`Holdings.owned` again before it acts.

The timing bound, for a replica killed at time D with its shards' Leases just
renewed (the worst case): every survivor has seen that last write by
``D + retry_period`` (it reads once a round), judges it expired
``lease_duration`` later, and acquires on its next round. A survivor that still
counts the dead replica as live in that round (its presence Lease was written
in the same round, but may have been seen one round later) waits one more
round. Hence :meth:`Timing.takeover_bound`: ``lease_duration + 3 *
(retry_period + round latency)``, 21 s plus three rounds' API latency with
client-go's 15 s / 10 s / 2 s (a round starts ``retry_period`` after the last
one ended).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TypeVar

K = TypeVar("K")


def shard_of(namespace: str, name: str, shards: int) -> int:
    """The shard of the object ``namespace/name``: the same in every process and release.

    blake2b, not ``hash()``: Python salts ``hash()`` of a string per process,
    so two replicas would disagree on every object.
    """
    if shards < 1:
        raise ValueError(f"shards must be at least 1, not {shards}")
    digest = hashlib.blake2b(f"{namespace}/{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % shards


def preference(replica: str, shard: int) -> int:
    """Rendezvous (highest random weight) score of ``replica`` for ``shard``.

    Every replica ranks candidates for a shard by the same scores, so they agree
    on who should take a free shard without talking, and a replica joining or
    leaving moves only the shards whose winner it is.
    """
    digest = hashlib.blake2b(f"{replica}\x00{shard}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big")


@dataclass(frozen=True)
class Timing:
    """The three periods of the Lease protocol, in seconds (client-go's defaults)."""

    lease_duration: float = 15.0
    """How long after seeing a Lease's last write others wait before taking it."""
    renew_deadline: float = 10.0
    """How long after sending its last successful renew a holder may still act."""
    retry_period: float = 2.0
    """The time between two rounds (read every Lease, then acquire, renew, release)."""

    def __post_init__(self) -> None:
        if not 0 < self.retry_period < self.renew_deadline < self.lease_duration:
            raise ValueError(
                "need 0 < retry_period < renew_deadline < lease_duration, got "
                f"{self.retry_period} / {self.renew_deadline} / {self.lease_duration}"
            )
        if not self.renew_interval + self.retry_period < self.renew_deadline:
            raise ValueError(
                "need lease_duration / 3 + retry_period < renew_deadline: a renewal "
                "falls due in some round at most retry_period late, and must be sent "
                f"before the deadline; got {self.lease_duration} / {self.retry_period} "
                f"/ {self.renew_deadline}"
            )

    @property
    def renew_interval(self) -> float:
        """How long after its last successful write a held shard's Lease is renewed again.

        A third of the duration, not every round: renewing 16 shards every
        2 s was 8 writes/s per operator for nothing. Safety does not depend on
        it (others time expiry from the write they last saw, so a Lease renewed
        less often only expires sooner after a death, and the takeover bound
        holds as it is). Liveness does: the renewal falls due in the first
        round that starts at least ``renew_interval`` after the last send,
        at most ``retry_period`` plus one round's latency later, and must be
        sent before ``renew_deadline`` or the holder stops acting for a while.
        With client-go's 15 / 10 / 2 s that leaves 3 s of API latency (5 + 2 +
        3 = 10); a third keeps a similar margin to the duration (an observer
        still has two more intervals before it may take the shard).
        """
        return self.lease_duration / 3

    @classmethod
    def scaled(cls, lease_duration: float) -> Timing:
        """client-go's proportions for a lease of ``lease_duration`` s (15: 15 / 10 / 2 s)."""
        return cls(lease_duration, lease_duration * 2 / 3, lease_duration * 2 / 15)

    def takeover_bound(self, round_latency: float = 0.0) -> float:
        """Worst case from a replica's death until its shards are owned again.

        ``round_latency``: how long one round's API calls take; a round starts
        ``retry_period`` after the previous one ended.
        """
        return self.lease_duration + 3 * (self.retry_period + round_latency)


@dataclass(frozen=True)
class LeaseRecord:
    """What one Lease said when it was read."""

    holder: str | None
    """``spec.holderIdentity``; None when never held or released."""
    version: str
    """``metadata.resourceVersion``: every write changes it."""
    duration: float
    """``spec.leaseDurationSeconds`` as its last writer set it."""


@dataclass(frozen=True)
class Sighting:
    """When this replica first saw a Lease at its current version (its own clock)."""

    version: str
    seen_at: float


def observe(
    previous: Mapping[K, Sighting], records: Mapping[K, LeaseRecord], now: float
) -> dict[K, Sighting]:
    """The sightings after reading ``records`` at ``now``: a new version is seen now."""
    sightings: dict[K, Sighting] = {}
    for key, record in records.items():
        before = previous.get(key)
        if before is not None and before.version == record.version:
            sightings[key] = before
        else:
            sightings[key] = Sighting(record.version, now)
    return sightings


def is_live(record: LeaseRecord | None, sighting: Sighting | None, now: float) -> bool:
    """Whether a Lease is held and its holder's last write is younger than its duration.

    Lenient when the Lease was never sighted (a caller that did not pass it
    through :func:`observe`): then it is taken as seen just now, never older.
    """
    if record is None or record.holder is None:
        return False
    seen_at = now if sighting is None or sighting.version != record.version else sighting.seen_at
    return now < seen_at + record.duration


def live_replicas(
    me: str,
    presence: Mapping[str, LeaseRecord],
    sightings: Mapping[str, Sighting],
    now: float,
) -> frozenset[str]:
    """The replicas whose presence Lease is live, and always ``me``."""
    alive = {
        replica
        for replica, record in presence.items()
        if record.holder == replica and is_live(record, sightings.get(replica), now)
    }
    return frozenset(alive | {me})


@dataclass(frozen=True)
class Plan:
    """One round's Lease writes for one replica, and the whole assignment it aims at."""

    acquire: frozenset[int]
    renew: frozenset[int]
    release: frozenset[int]
    target: Mapping[str, frozenset[int]] = field(default_factory=dict)
    """Which shards each live replica should hold, as this replica sees it."""


def quotas(replicas: frozenset[str], shards: int, held: Mapping[str, int]) -> dict[str, int]:
    """Each live replica's share: ``shards // n``, and one more for ``shards % n`` of them.

    The extra ones go first to replicas already holding more than ``shards // n``
    (the most first), so a balanced assignment is never reshuffled to move an
    extra elsewhere; the rest by name. Not by how many each holds below that:
    while survivors take a dead replica's shards, those counts change every
    round, and an extra that went to the replica holding most in one round went
    to the other in the next, which cost a takeover one more round than
    :meth:`Timing.takeover_bound` (found by the property test).
    """
    base, extra = divmod(shards, len(replicas))

    def standing(replica: str) -> tuple[int, str]:
        count = held.get(replica, 0)
        return (-count if count > base else 0, replica)

    order = sorted(replicas, key=standing)
    return {replica: base + (1 if rank < extra else 0) for rank, replica in enumerate(order)}


def by_preference(replica: str, shard_ids: list[int]) -> list[int]:
    """``shard_ids``, the ones ``replica`` prefers most first."""
    return sorted(shard_ids, key=lambda k: (-preference(replica, k), k))


def plan_claims(
    me: str,
    shards: int,
    *,
    records: Mapping[int, LeaseRecord],
    sightings: Mapping[int, Sighting],
    live: frozenset[str],
    now: float,
) -> Plan:
    """Which shard Leases ``me`` acquires, renews and releases this round.

    ``records`` are the shard Leases that exist (a missing shard was never
    held); ``sightings`` come from :func:`observe`; ``live`` from
    :func:`live_replicas`. Every live replica computes the same target from
    the same Leases: each keeps its own shards up to its quota (those it
    prefers most), and the rest (free, expired, a dead replica's, or a
    replica's excess) go one by one to the replica under quota that prefers
    them most. ``me`` then renews its targeted Leases, releases the Leases it
    holds beyond its target, and acquires targeted shards nobody validly
    holds. A Lease another replica validly holds is never taken: the excess is
    released by its holder, and a dead replica's expires.
    """
    live = live | {me}
    mine = {k for k, record in records.items() if record.holder == me}
    valid_holder: dict[int, str] = {
        k: record.holder
        for k, record in records.items()
        if record.holder is not None
        and record.holder != me
        and is_live(record, sightings.get(k), now)
    }
    held_by: dict[str, list[int]] = {replica: [] for replica in live}
    for k in mine:
        held_by[me].append(k)
    for k, holder in valid_holder.items():
        if holder in held_by:
            held_by[holder].append(k)
    quota = quotas(frozenset(live), shards, {r: len(ks) for r, ks in held_by.items()})

    target: dict[str, set[int]] = {}
    pool: set[int] = set(range(shards)) - mine - set(valid_holder)
    for replica, held in held_by.items():
        ranked = by_preference(replica, held)
        target[replica] = set(ranked[: quota[replica]])
        pool |= set(ranked[quota[replica] :])
    # A shard validly held by a replica not (yet) counted live cannot be taken
    # now; it stays in the pool so that the target still says who gets it.
    pool |= {k for k, holder in valid_holder.items() if holder not in held_by}
    for k in sorted(pool):
        wanting = [r for r in sorted(live) if len(target[r]) < quota[r]]
        if wanting:
            winner = max(wanting, key=lambda r: (preference(r, k), r))
            target[winner].add(k)

    free = set(range(shards)) - mine - set(valid_holder)
    return Plan(
        acquire=frozenset(target[me] & free),
        renew=frozenset(target[me] & mine),
        release=frozenset(mine - target[me]),
        target={replica: frozenset(ks) for replica, ks in target.items()},
    )


@dataclass(frozen=True)
class Holdings:
    """The shards this replica holds: for each, when it sent its last successful write.

    Only a write the API server accepted counts, timed from when it was *sent*
    (on this replica's monotonic clock): the server applied it later, so
    others saw it later still.
    """

    sent_at: Mapping[int, float] = field(default_factory=dict)

    def renewed(self, shard: int, sent_at: float) -> Holdings:
        """These holdings after an acquire or renew of ``shard`` sent at ``sent_at`` succeeded."""
        return Holdings({**self.sent_at, shard: sent_at})

    def without(self, lost: frozenset[int] | set[int]) -> Holdings:
        """These holdings without ``lost`` (released, or taken by another: a 409 says so)."""
        return Holdings({k: t for k, t in self.sent_at.items() if k not in lost})

    def owned(self, now: float, timing: Timing) -> frozenset[int]:
        """The shards this replica may act on at ``now``: renewed within ``renew_deadline``."""
        return frozenset(k for k, t in self.sent_at.items() if now < t + timing.renew_deadline)

    def owns(self, namespace: str, name: str, shards: int, now: float, timing: Timing) -> bool:
        """Whether this replica may act on the object ``namespace/name`` at ``now``."""
        return shard_of(namespace, name, shards) in self.owned(now, timing)

    def renewal_due(self, shard: int, now: float, timing: Timing) -> bool:
        """Whether a round at ``now`` renews ``shard``'s Lease (which this replica holds).

        Due ``renew_interval`` after the last successful send, and at once when
        no send of this process is known (a restarted replica finding its own
        name on a Lease still has to write before it may act).
        """
        sent_at = self.sent_at.get(shard)
        return sent_at is None or now >= sent_at + timing.renew_interval


@dataclass(frozen=True)
class Memory:
    """What one replica carries from round to round: its holdings and its sightings."""

    holdings: Holdings = field(default_factory=Holdings)
    shard_sightings: Mapping[int, Sighting] = field(default_factory=dict)
    presence_sightings: Mapping[str, Sighting] = field(default_factory=dict)


def start_round(
    me: str,
    shards: int,
    memory: Memory,
    *,
    shard_records: Mapping[int, LeaseRecord],
    presence: Mapping[str, LeaseRecord],
    now: float,
    timing: Timing,
) -> tuple[Memory, Plan]:
    """A round's plan from the Leases read at ``now``, and the memory to carry on.

    The holdings already drop what the plan releases and what another replica
    now holds: the replica stops acting on those before any write is sent.
    The plan renews only the Leases whose renewal is due
    (:meth:`Holdings.renewal_due`); the others keep their last write.
    """
    shard_sightings = observe(memory.shard_sightings, shard_records, now)
    presence_sightings = observe(memory.presence_sightings, presence, now)
    live = live_replicas(me, presence, presence_sightings, now)
    plan = plan_claims(
        me, shards, records=shard_records, sightings=shard_sightings, live=live, now=now
    )
    taken = {k for k, record in shard_records.items() if record.holder != me}
    holdings = memory.holdings.without(set(plan.release) | taken)
    due = frozenset(k for k in plan.renew if holdings.renewal_due(k, now, timing))
    return Memory(holdings, shard_sightings, presence_sightings), replace(plan, renew=due)
