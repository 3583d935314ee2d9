"""The pass slots: at most ``--max-concurrent-passes`` passes at once, the due ones first.

A plain semaphore served its waiters in arrival order. At N = 10,000 that
starved the passes that finish work: 10,000 first passes queued at start (or
at a mass creation), and a pass woken because a revision's Deployment became
Available, the one that makes an object Healthy, waited behind all of them
(bench-scale: 4,621 Deployments ready after 25 minutes, 148 objects Healthy).
A canary's look or a pause ending would wait the same way: a breach judged a
queue later than its interval.

So a waiting pass has a :class:`Priority`. A pass that something asked for (a
watch event, a person's change) or whose time has come in a rollout in flight
goes ahead of every routine one (an object's first pass since this process
started, the safety resync); within one priority, arrival order. Routine passes
can wait as long as due ones keep coming; under an overload that is the point
(work in flight finishes before new work starts), and at rest no due pass
waits at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from modelcanary.rollout.state import IDLE_SECONDS


class Priority(IntEnum):
    """Lower goes first."""

    DUE = 0
    """Woken by a change, or timed by a rollout in flight (a look, a pause, a poll)."""
    ROUTINE = 1
    """An object's first pass since start with nothing in flight; the safety resync."""


def first_pass_priority(obj: Mapping[str, Any]) -> Priority:
    """An object's first pass in this process: due when its status shows a canary
    or a restore in flight (a restart must not queue a canary's next look behind
    every Healthy object's first pass), routine otherwise."""
    status = obj.get("status") or {}
    if not isinstance(status, Mapping):
        return Priority.ROUTINE
    in_flight = status.get("canaryRevision") or status.get("restoring")
    return Priority.DUE if in_flight else Priority.ROUTINE


@dataclass(frozen=True)
class NextPass:
    """What a pass says of the one after it: when, and how urgent if its timer starts it."""

    delay: float
    timer: Priority

    @classmethod
    def after(cls, delay: float, *, requeue_after: float) -> NextPass:
        """Routine only for the safety resync (the decision asked for nothing sooner);
        a shorter timer is a look, a pause, a poll or a retry that is due then."""
        timer = Priority.ROUTINE if requeue_after >= IDLE_SECONDS else Priority.DUE
        return cls(delay, timer)

    def priority(self, *, woken: bool) -> Priority:
        """The next pass's priority: due when something woke it, else its timer's."""
        return Priority.DUE if woken else self.timer


class PassSlots:
    """``limit`` slots; a freed slot goes to the waiting pass of highest priority."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"need at least one pass slot, got {limit}")
        self.limit = limit
        self._free = limit
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        """A heap; a cancelled waiter's future stays in it until popped."""
        self._live = 0
        """Waiters in the heap not cancelled (counted, not scanned: 10,000 wait at a start)."""
        self._order = itertools.count()

    @property
    def in_use(self) -> int:
        return self.limit - self._free

    def waiting(self) -> int:
        return self._live

    @contextlib.asynccontextmanager
    async def take(self, priority: Priority) -> AsyncIterator[None]:
        """Hold one slot for the ``async with`` body."""
        await self._acquire(priority)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, priority: Priority) -> None:
        if self._free > 0 and not self._live:
            self._free -= 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiting, (int(priority), next(self._order), future))
        self._live += 1
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Handed a slot in the same step as the cancellation: pass it on.
                self._release()
            else:
                future.cancel()
                self._live -= 1
            raise

    def _release(self) -> None:
        # The slot goes straight to the best waiter, so a pass arriving meanwhile
        # cannot take it past those already queued.
        while self._waiting:
            *_, future = heapq.heappop(self._waiting)
            if not future.done():
                self._live -= 1
                future.set_result(None)
                return
        self._free += 1
