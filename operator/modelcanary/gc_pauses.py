"""Python's cyclic garbage collector, kept from stopping the event loop for long.

A full collection (CPython's oldest generation) walks every container object
the process holds, with the event loop stopped. The operator's heap is mostly
long-lived and acyclic: kopf's copy of each object, the view's Deployments
and Services, a task per ModelDeployment. A probe on ``gc.callbacks`` in the
scale bench at N = 1,000 (2026-11-29) measured full collections of 200 to
350 ms: twelve over a ramp, and nine, 1.1 s in all, in a restart of 6.4 s; a
full collection grows with the heap, so at 10,000 each is about ten times
that. A pass, a look or a reaction that falls due meanwhile waits.

So after each full collection, what survived it is frozen (``gc.freeze``):
moved to CPython's permanent generation, which later collections do not
walk. The collection has just found all of it alive, so no garbage is frozen
with it. A frozen object freed by its reference count (almost all of ours:
watch bodies replaced by newer ones) leaves the permanent generation as it
goes. What a frozen object can still do is become part of a garbage *cycle*,
which no collection would then see; so once every :data:`UNFREEZE_SECONDS`
the permanent generation is handed back (``gc.unfreeze``) and the next full
collection walks everything, once, and frees any such cycle.

Every collection's duration is counted here, by generation, for
``modelcanary_gc_pause_seconds`` (``telemetry``), with or without the freeze
(``run --no-gc-freeze`` turns it off, to compare, or should it ever cost more
than it saves). The counters are plain
numbers, not prometheus-client metrics: a collection can start in any thread,
including the one rendering ``/metrics`` while it holds a metric's lock.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

UNFREEZE_SECONDS = 3600.0
"""How often the frozen heap is walked again, at the next full collection."""

BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
"""Upper bounds (seconds) of the pause histogram; +Inf is implied."""


@dataclass
class PauseCounts:
    """One generation's collections: a histogram's cumulative bucket counts, count and sum."""

    buckets: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    count: int = 0
    total_seconds: float = 0.0

    def observe(self, seconds: float) -> None:
        for index, bound in enumerate(BUCKETS):
            if seconds <= bound:
                self.buckets[index] += 1
        self.count += 1
        self.total_seconds += seconds


PAUSES: dict[int, PauseCounts] = {generation: PauseCounts() for generation in (0, 1, 2)}
"""The process's collections by generation, as ``/metrics`` shows them."""


class GcPauses:
    """Times every collection; after a full one, asks the loop to freeze the survivors.

    ``install`` hooks ``gc.callbacks``; ``remove`` unhooks it. The freeze runs on
    ``loop`` (a collection may finish in any thread); ``clock`` and ``collector``
    are the tests' seams."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        *,
        freeze: bool = True,
        unfreeze_seconds: float = UNFREEZE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        collector: Any = gc,
        counts: dict[int, PauseCounts] = PAUSES,
    ) -> None:
        self.generations = counts
        self.freeze = freeze
        """False (``run --no-gc-freeze``): collections are timed, nothing is frozen."""
        self.freezes = 0
        self.unfreezes = 0
        self._loop = loop
        self._unfreeze_seconds = unfreeze_seconds
        self._clock = clock
        self._gc = collector
        self._started = 0.0
        self._walked_all_at = clock()

    def install(self) -> None:
        if self._on_collection not in self._gc.callbacks:
            self._gc.callbacks.append(self._on_collection)

    def remove(self, *, exiting: bool = False) -> None:
        """Unhook; hand the frozen heap back, or, when the process is ``exiting``,
        freeze all of it: the interpreter's last collection would walk the whole
        heap (210 to 330 ms at N = 1,000) only to free what the exit frees anyway."""
        if self._on_collection in self._gc.callbacks:
            self._gc.callbacks.remove(self._on_collection)
        if exiting and self.freeze:
            self._gc.freeze()
        else:
            self._gc.unfreeze()

    def _on_collection(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.generations[generation].observe(time.perf_counter() - self._started)
        if generation == 2 and self.freeze and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self.after_full_collection)

    def after_full_collection(self) -> None:
        """Freeze what the full collection left, or, once an interval, hand it all back."""
        now = self._clock()
        if self._gc.get_freeze_count() and now - self._walked_all_at >= self._unfreeze_seconds:
            # The next full collection walks the whole heap again; this one just
            # walked only what was not frozen.
            self._gc.unfreeze()
            self.unfreezes += 1
            self._walked_all_at = now
            return
        self._gc.freeze()
        self.freezes += 1
