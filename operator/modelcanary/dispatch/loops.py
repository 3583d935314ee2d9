"""One loop per owned object: started and stopped by watch events and shard ownership.

With sharding on, kopf's per-object handlers cannot run the passes (see
docs/sharding.md, "Wiring it in"): every replica's kopf would add and remove
the finalizer and write its bookkeeping on every object. Instead the view's
watches report every ModelDeployment and RollbackDrill, and this dispatcher
keeps exactly one loop running for each object that exists, wants a loop,
and whose shard this replica owns; it knows nothing of kopf or of passes.

Ownership is asked through ``owns(namespace, name)`` (``ShardManager.owns``)
of an object's *owner key*: a ModelDeployment's own namespace/name, and for a
RollbackDrill its ModelDeployment's, so a drill always runs in the replica that
runs its ModelDeployment's passes (both act on the same route).

Stopping is cooperative first: a loop is told to stop (its
:attr:`ObjectLoop.stopping` is set and it is woken), so a pass in progress
finishes its writes and the loop returns; after ``stop_grace`` seconds it is
cancelled, as a crash would end it (every pass already survives that).
:meth:`Dispatcher.ownership_changed` awaits the loops of lost shards before it
returns, and ``ShardManager`` awaits it before it writes a released Lease
free: no other replica can take the shard while a loop still acts on it. A
shard that lapses (renew deadline passed, the API server unreachable) is
reported at the next round; meanwhile each pass asks :meth:`ObjectLoop.owns`
before it acts, and the margin between ``renew_deadline`` and
``lease_duration`` covers one pass's writes in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Final

log = logging.getLogger(__name__)

MODEL_DEPLOYMENT: Final = "ModelDeployment"
ROLLBACK_DRILL: Final = "RollbackDrill"
DEFAULT_STOP_GRACE_SECONDS: Final = 5.0
"""How long a loop told to stop may take to finish its pass before it is cancelled.

Well under ``lease_duration - renew_deadline`` (5 s with the defaults is the
whole margin; a pass is a few ms to a few s of API calls): a shard being
released is written free only after its loops end."""
CRASH_BACKOFF_SECONDS: Final = 5.0
LAPSE_POLL_SECONDS: Final = 0.5
"""How often a loop that ended on a lapsed shard asks whether it is owned again."""


@dataclass(frozen=True, order=True)
class ObjectKey:
    """One object a loop runs for."""

    kind: str
    namespace: str
    name: str


@dataclass
class ObjectLoop:
    """What a running loop gets: its object, a wake-up, and when to stop."""

    key: ObjectKey
    owner: tuple[str, str]
    """The namespace/name whose shard decides who runs this loop."""
    owns_owner: Callable[[str, str], bool]
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def owns(self) -> bool:
        """Ask right before acting: this replica still owns the object and was not told to stop."""
        return not self.stopping.is_set() and self.owns_owner(*self.owner)

    async def sleep(self, seconds: float) -> bool:
        """Until woken, told to stop, or ``seconds`` pass; clears the wake-up it consumed
        and says whether there was one."""
        if not self.wake.is_set() and not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), timeout=seconds)
        woken = self.wake.is_set()
        self.wake.clear()
        return woken


RunLoop = Callable[[ObjectLoop], Awaitable[None]]
"""Runs one object's loop until it is done (the object finished, or gone) or told to stop."""


@dataclass
class _Entry:
    owner: tuple[str, str]
    loop: ObjectLoop | None = None
    task: asyncio.Task[None] | None = None


class Dispatcher:
    """Keeps one loop per wanted, owned object; none for anything else.

    ``run_loops`` maps a kind to the coroutine that runs one of its objects.
    Watch events arrive through :meth:`observed` (sync, as the view's
    callbacks are) and :meth:`forgotten`; ownership through
    :meth:`ownership_changed`.
    """

    def __init__(
        self,
        owns: Callable[[str, str], bool],
        run_loops: dict[str, RunLoop],
        *,
        stop_grace: float = DEFAULT_STOP_GRACE_SECONDS,
        crash_backoff: float = CRASH_BACKOFF_SECONDS,
        lapse_poll: float = LAPSE_POLL_SECONDS,
    ) -> None:
        self.owns = owns
        self.run_loops = run_loops
        self.stop_grace = stop_grace
        self.crash_backoff = crash_backoff
        self.lapse_poll = lapse_poll
        self._entries: dict[ObjectKey, _Entry] = {}
        self._stopping: set[asyncio.Task[None]] = set()
        self._draining: dict[ObjectKey, asyncio.Task[None]] = {}
        """Loops told to stop that have not ended: none starts again for the key meanwhile."""

    # ------------------------------------------------------------------ queries

    def running(self) -> frozenset[ObjectKey]:
        """The objects whose loop is running now (not counting loops being stopped)."""
        return frozenset(
            key for key, entry in self._entries.items() if entry.task and not entry.task.done()
        )

    # ------------------------------------------------------------------ events

    def observed(self, key: ObjectKey, owner: tuple[str, str]) -> None:
        """The object exists and wants a loop (a watch's ADDED or MODIFIED): run or wake it."""
        entry = self._entries.get(key)
        if entry is None:
            entry = self._entries[key] = _Entry(owner)
        if entry.owner != owner:  # a drill's spec names another ModelDeployment: unusual
            entry.owner = owner
            self._stop_entry(key, entry)
        if entry.task is not None and not entry.task.done() and entry.loop is not None:
            entry.loop.wake.set()
            return
        self._start_if_owned(key, entry)

    def wake(self, key: ObjectKey) -> None:
        """Wake a running loop (its object's dependents changed); nothing if none runs."""
        entry = self._entries.get(key)
        if entry is not None and entry.loop is not None:
            entry.loop.wake.set()

    async def forgotten(self, key: ObjectKey) -> None:
        """The object is gone, or wants no loop any more (a finished drill): stop its loop."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            await self._stopped(key, entry)

    async def ownership_changed(self, gained: Iterable[int], lost: Iterable[int]) -> None:
        """``ShardManager.on_change``: stop the loops no longer owned (awaited), start the new ones.

        The shard numbers are not needed: :attr:`owns` already answers from the
        new holdings, so every known object is judged again.
        """
        del gained, lost
        unowned = [(k, e) for k, e in self._entries.items() if not self.owns(*e.owner)]
        await asyncio.gather(*(self._stopped(key, entry) for key, entry in unowned))
        for key, entry in list(self._entries.items()):
            self._start_if_owned(key, entry)

    async def close(self) -> None:
        """Stop every loop (the operator is shutting down)."""
        entries = list(self._entries.items())
        self._entries.clear()
        await asyncio.gather(*(self._stopped(key, entry) for key, entry in entries))
        await asyncio.gather(*self._stopping)

    # ------------------------------------------------------------------ loops

    def _start_if_owned(self, key: ObjectKey, entry: _Entry) -> None:
        if entry.task is not None and not entry.task.done():
            return
        if key in self._draining or not self.owns(*entry.owner):
            return
        entry.loop = ObjectLoop(key, entry.owner, self.owns)
        entry.task = asyncio.create_task(
            self._guarded(key, entry.loop),
            name=f"modelcanary-{key.kind}-{key.namespace}/{key.name}",
        )

    async def _guarded(self, key: ObjectKey, loop: ObjectLoop) -> None:
        """Run the loop; after a crash, again after a backoff while still wanted and owned;
        after it ended on a lapsed shard, again once the shard is renewed.

        A lapse is a shard whose renewal was sent late (a slow round, a slow
        API server): :meth:`ObjectLoop.owns` says no until the next renewal,
        and the loop, which asks before every step, ends. The Lease manager
        reports no change when that renewal succeeds, since the shard never
        left this replica, so nothing else would start the loop again: the
        object would sit unserved until its next spec change (a canary stuck
        mid-step, seen on the first run of three replicas). If the shard is
        lost for good instead, :meth:`ownership_changed` stops this task.
        """
        run = self.run_loops[key.kind]
        while True:
            try:
                await run(loop)
                if not self._lapsed(key, loop):
                    return
                log.warning(
                    "%s %s/%s: shard lapsed; waiting for its renewal",
                    key.kind,
                    key.namespace,
                    key.name,
                )
                while self._lapsed(key, loop):
                    await loop.sleep(self.lapse_poll)
                if loop.stopping.is_set() or self._entries.get(key) is None:
                    return
                continue
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug in one object's loop must not end the others'
                log.exception("%s %s/%s: loop crashed", key.kind, key.namespace, key.name)
            await loop.sleep(self.crash_backoff)
            if not loop.owns() or self._entries.get(key) is None:
                return

    def _lapsed(self, key: ObjectKey, loop: ObjectLoop) -> bool:
        """Still this loop's object and not told to stop, but not owned right now."""
        entry = self._entries.get(key)
        return (
            entry is not None
            and entry.loop is loop
            and not loop.stopping.is_set()
            and not self.owns(*entry.owner)
        )

    def _stop_entry(self, key: ObjectKey, entry: _Entry) -> None:
        """Stop in the background (the caller cannot await); it starts again if still owned."""

        task = asyncio.ensure_future(self._stopped(key, entry))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def _stopped(self, key: ObjectKey, entry: _Entry) -> None:
        task, loop = entry.task, entry.loop
        entry.task = entry.loop = None
        if task is None or loop is None or task.done():
            return
        self._draining[key] = task
        try:
            await self._drain(task, loop)
        finally:
            if self._draining.get(key) is task:
                del self._draining[key]
        # Seen again while this loop drained (a ModelDeployment recreated under
        # its name): its loop starts now, never alongside the old one.
        again = self._entries.get(key)
        if again is not None:
            self._start_if_owned(key, again)

    async def _drain(self, task: asyncio.Task[None], loop: ObjectLoop) -> None:
        loop.stopping.set()
        loop.wake.set()
        done, _ = await asyncio.wait({task}, timeout=self.stop_grace)
        if not done:
            log.warning(
                "%s %s/%s: loop did not stop within %.0f s; cancelling",
                loop.key.kind,
                loop.key.namespace,
                loop.key.name,
                self.stop_grace,
            )
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
