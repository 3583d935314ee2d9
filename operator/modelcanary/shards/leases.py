"""Shard and presence Leases in the API server, and the loop that claims them.

The I/O edge of :mod:`modelcanary.shards.ownership`: every decision is made
there; this module reads and writes ``coordination.k8s.io/v1`` Leases in the
operator's namespace and keeps the time.

* ``modelcanary-shard-<k>``: held by the replica that owns shard ``k``.
* ``modelcanary-replica-<identity>``: each replica's presence, renewed as a
  held shard is (a third of the duration after its last write), so the others
  can count the live replicas (and so their fair share). Every round, it was
  30 of a replica's 72 requests a minute at rest.

All of them are read with one LIST per round (a consistent snapshot: a shard
holder's presence is never missing from the same read) and written with a PUT
that carries the resourceVersion the round read, or a POST for a Lease that
does not exist yet. A 409 means another replica wrote first: the write is lost
and the next round reads again. Writes go through kr8s's client (``call_api``)
because kr8s has no Lease class and its objects have no PUT.

Times: decisions use the monotonic clock (``time.monotonic``, which is also
every event loop's), never the wall clock, so :meth:`ShardManager.owns` gives
the same answer on the operator's loop as on the Lease thread's
(``shards.thread``); ``renewTime`` and ``acquireTime`` are written for people
(``kubectl get lease``) and for tools that expect them, and are not read back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import kr8s
import kr8s.asyncio

from modelcanary.apierrors import API_ERRORS
from modelcanary.rest import status_code
from modelcanary.shards.ownership import (
    Holdings,
    LeaseRecord,
    Memory,
    Sighting,
    Timing,
    shard_of,
    start_round,
)

log = logging.getLogger(__name__)

LEASE_API = "coordination.k8s.io/v1"
LABEL_LEASE = "modelcanary.io/lease"
"""``shard`` or ``replica``: what a Lease is for; the round's LIST selects on it."""
SHARD_PREFIX = "modelcanary-shard-"
REPLICA_PREFIX = "modelcanary-replica-"
LEASE_VERBS = ("list", "create", "update")
"""The rights on Leases in the operator's namespace that sharding uses, and all the
chart grants: a round LISTs them, creates the missing ones and updates the rest
with the resourceVersion it read. A departed replica's presence Lease is left
to expire (nothing deletes Leases), and nothing watches or GETs one.
"""

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?")
_MAX_NAME = 253
_CONFLICT = 409
_NOT_FOUND = 404

OwnershipChanged = Callable[[frozenset[int], frozenset[int]], Awaitable[None]]
"""Called with (gained, lost) shards; awaited before a released shard is written free."""


def shard_lease_name(shard: int) -> str:
    return f"{SHARD_PREFIX}{shard}"


def replica_lease_name(identity: str) -> str:
    """The presence Lease of the replica ``identity`` (its pod's name, in the chart).

    Refused unless it makes a valid object name: otherwise every round would
    fail at the API server, and the replica would never own anything.
    """
    name = f"{REPLICA_PREFIX}{identity}"
    if len(name) > _MAX_NAME or not _DNS_SUBDOMAIN.fullmatch(name):
        raise ValueError(f"replica identity {identity!r} does not make a valid Lease name")
    return name


def _micro_time() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_record(body: dict[str, Any]) -> LeaseRecord:
    """What the planner needs of a Lease: its holder, version and duration."""
    spec = body.get("spec") or {}
    return LeaseRecord(
        holder=spec.get("holderIdentity") or None,
        version=body["metadata"]["resourceVersion"],
        duration=float(spec.get("leaseDurationSeconds") or 0),
    )


class LeaseStore:
    """The Leases of one operator namespace: one LIST, and writes that lose on a 409."""

    def __init__(self, api: kr8s.asyncio.Api, namespace: str) -> None:
        self.api = api
        self.namespace = namespace

    async def list(self) -> dict[str, dict[str, Any]]:
        """Every shard and presence Lease, by name."""
        async with self.api.call_api(
            "GET",
            version=LEASE_API,
            base="/apis",
            namespace=self.namespace,
            url="leases",
            params={"labelSelector": LABEL_LEASE},
        ) as response:
            items: list[dict[str, Any]] = response.json().get("items") or []
        return {item["metadata"]["name"]: item for item in items}

    async def write(
        self,
        name: str,
        read: dict[str, Any] | None,
        *,
        holder: str | None,
        duration_seconds: int,
        purpose: str,
    ) -> bool:
        """Set ``name``'s holder, if the Lease is still what was ``read`` (None: absent).

        False when another writer got there first (409 Conflict or AlreadyExists,
        or 404: deleted since the read). Other API errors are raised.
        """
        spec = dict((read or {}).get("spec") or {})
        now = _micro_time()
        if spec.get("holderIdentity") != holder:
            spec["leaseTransitions"] = int(spec.get("leaseTransitions") or 0) + (1 if read else 0)
            spec["acquireTime"] = now if holder else None
        spec.update(holderIdentity=holder, leaseDurationSeconds=duration_seconds, renewTime=now)
        if read is None:
            kind = "shard" if name.startswith(SHARD_PREFIX) else "replica"
            metadata: dict[str, Any] = {"name": name, "labels": {LABEL_LEASE: kind}}
            method, url = "POST", "leases"
        else:
            # resourceVersion stays in: the API server refuses the PUT if it moved.
            metadata = read["metadata"]
            method, url = "PUT", f"leases/{name}"
        body = {"apiVersion": LEASE_API, "kind": "Lease", "metadata": metadata, "spec": spec}
        try:
            async with self.api.call_api(
                method,
                version=LEASE_API,
                base="/apis",
                namespace=self.namespace,
                url=url,
                json=body,
            ):
                pass
        except kr8s.ServerError as error:
            if status_code(error) in (_CONFLICT, _NOT_FOUND):
                log.debug("lease %s: lost the write to %s (%s)", name, purpose, status_code(error))
                return False
            raise
        return True


class ShardManager:
    """Claims this replica's share of the shard Leases, round after round.

    :meth:`run` until cancelled. Cancelling it releases nothing, as a SIGKILL
    would: the others take the shards once the Leases expire. A graceful stop
    cancels :meth:`run`, then awaits :meth:`release`, which frees everything
    at once. Before acting on an object, ask :meth:`owns`; ``on_change`` hears
    of shards gained and lost (lapsed shards are reported at the next round,
    but :meth:`owns` says no the moment the deadline passes).
    """

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        namespace: str,
        identity: str,
        shards: int,
        *,
        timing: Timing | None = None,
        on_change: OwnershipChanged | None = None,
    ) -> None:
        self.store = LeaseStore(api, namespace)
        replica_lease_name(identity)  # refuses an identity that makes no Lease name
        self.identity = identity
        self.shards = shards
        self.timing = timing or Timing()
        if self.timing.lease_duration != int(self.timing.lease_duration):
            raise ValueError("lease_duration must be whole seconds: a Lease says it in seconds")
        self.on_change = on_change
        self.holdings = Holdings()
        self._shard_sightings: Mapping[int, Sighting] = {}
        self._presence_sightings: Mapping[str, Sighting] = {}
        self._announced: frozenset[int] = frozenset()
        self._regained: set[int] = set()
        """Shards renewed after they lapsed: announced as gained though they never left."""
        self._presence_sent_at: float | None = None
        """When this replica's presence Lease was last written (sent), None: not yet."""
        self.rounds = 0
        self.slowest_round = 0.0
        """Seconds the slowest round so far took: the latency in the takeover bound."""

    # ------------------------------------------------------------------ queries

    def now(self) -> float:
        return time.monotonic()

    def owned(self) -> frozenset[int]:
        """The shards this replica may act on right now."""
        return self.holdings.owned(self.now(), self.timing)

    def owns(self, namespace: str, name: str) -> bool:
        """Whether this replica may act on the object ``namespace/name`` right now."""
        return shard_of(namespace, name, self.shards) in self.owned()

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        """One round every ``retry_period``; an API failure skips to the next round."""
        while True:
            try:
                await self.round()
            except API_ERRORS as error:
                log.warning("shard leases: round failed, retrying: %s", error)
            await asyncio.sleep(self.timing.retry_period)

    async def round(self) -> None:
        """Read every Lease, plan, stop acting on what is going, then write.

        Writes, in order: the presence Lease, the acquired shards, the kept
        shards whose renewal is due (a third of the duration after the last
        send); then ``on_change`` is awaited (lost shards' loops end, gained
        ones start); then the released shards are written free.
        """
        read_at = self.now()
        leases = await self.store.list()
        shard_records: dict[int, LeaseRecord] = {}
        presence: dict[str, LeaseRecord] = {}
        for name, body in leases.items():
            if name.startswith(REPLICA_PREFIX):
                presence[name.removeprefix(REPLICA_PREFIX)] = lease_record(body)
            elif name.startswith(SHARD_PREFIX) and name.removeprefix(SHARD_PREFIX).isdigit():
                k = int(name.removeprefix(SHARD_PREFIX))
                if k < self.shards:  # a Lease left by a larger shard count is ignored
                    shard_records[k] = lease_record(body)
        memory, plan = start_round(
            self.identity,
            self.shards,
            Memory(self.holdings, self._shard_sightings, self._presence_sightings),
            shard_records=shard_records,
            presence=presence,
            now=read_at,
            timing=self.timing,
        )
        self.holdings = memory.holdings
        self._shard_sightings, self._presence_sightings = (
            memory.shard_sightings,
            memory.presence_sightings,
        )
        # Shards lost are already out of the holdings (owns() says no), but
        # their loops are stopped only after the renewals below: stopping
        # awaits the loops, up to a grace of seconds, and renewals held back
        # that long would let the kept shards lapse too.
        duration = int(self.timing.lease_duration)
        # All at once, not one after another: each write is its own compare-and-
        # swap on its own Lease, and in sequence a round of a few shards took
        # several API round trips, enough on a loaded API server (100-300 ms a
        # write) to send a renewal after its deadline and lapse a shard that
        # nobody else wanted (found on the first run of three replicas).
        claimed = sorted(plan.acquire | plan.renew)
        sent_at = self.now()
        mine = replica_lease_name(self.identity)
        presence_due = (
            self._presence_sent_at is None
            or sent_at >= self._presence_sent_at + self.timing.renew_interval
        )

        def hold(name: str, purpose: str) -> Awaitable[bool]:
            return self.store.write(
                name,
                leases.get(name),
                holder=self.identity,
                duration_seconds=duration,
                purpose=purpose,
            )

        writes = {shard_lease_name(k): hold(shard_lease_name(k), "claim") for k in claimed}
        if presence_due:
            writes[mine] = hold(mine, "presence")
        outcomes = await asyncio.gather(*writes.values(), return_exceptions=True)
        results = dict(zip(writes, outcomes, strict=True))
        if presence_due:
            # Refused or failed: written again next round.
            self._presence_sent_at = sent_at if results[mine] is True else None
        answered_at = self.now()
        for k in claimed:
            result = results[shard_lease_name(k)]
            if result is True:
                if k in self.holdings.sent_at and k not in self.holdings.owned(
                    answered_at, self.timing
                ):
                    self._regained.add(k)  # held, lapsed, and renewed all the same
                self.holdings = self.holdings.renewed(k, sent_at)
            elif result is False:  # another replica's write won, or the Lease is gone
                self.holdings = self.holdings.without({k})
            # A failed write changes nothing: a held shard stays until its deadline.
        failed = [r for r in outcomes if isinstance(r, Exception)]
        if failed:
            # As before, an API failure ends the round (run() logs it and retries);
            # the claims that did succeed are recorded above.
            raise failed[0]
        # Before a Lease is written free, every loop acting under it has ended.
        await self._announce()
        for k in sorted(plan.release):
            name = shard_lease_name(k)
            await self.store.write(
                name, leases.get(name), holder=None, duration_seconds=1, purpose="release"
            )
        self.rounds += 1
        self.slowest_round = max(self.slowest_round, self.now() - read_at)
        await self._announce()

    async def release(self) -> None:
        """Graceful stop: act on nothing from now on, then free every Lease this replica holds.

        Call after :meth:`run` is cancelled. Best effort: a Lease whose write
        fails expires like a dead replica's.
        """
        self.holdings = Holdings()
        await self._announce()
        with contextlib.suppress(*API_ERRORS):
            leases = await self.store.list()
            for name, body in sorted(leases.items()):
                if (body.get("spec") or {}).get("holderIdentity") == self.identity:
                    with contextlib.suppress(*API_ERRORS):
                        await self.store.write(
                            name, body, holder=None, duration_seconds=1, purpose="release"
                        )

    async def _announce(self) -> None:
        """Tell ``on_change`` what was gained and lost since the last announcement.

        A shard that lapsed and was renewed between two announcements is
        gained again: while it lapsed, :meth:`owns` said no, so an object
        first seen then got no loop, and nothing else would start one (seen
        with one replica and 1,000 objects created at once: 11 never got a
        status). Running loops wait out a lapse on their own
        (``Dispatcher``)."""
        owned = self.owned()
        regained, self._regained = self._regained & owned, set()
        gained, lost = (owned - self._announced) | regained, self._announced - owned
        self._announced = owned
        if (gained or lost) and self.on_change is not None:
            await self.on_change(frozenset(gained), frozenset(lost))
