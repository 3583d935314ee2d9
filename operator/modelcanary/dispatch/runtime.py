"""Sharded mode's moving parts, put together: Leases, the unselected watch, the loops.

``handlers`` builds one :class:`ShardedRuntime` at start-up when ``run`` was
given ``--shards`` (and then registers no per-object kopf handler), starts
it, and stops it at clean-up. Everything here is kopf-free; what is kopf's
(posting events) comes in through the work objects.

The Lease rounds run on a thread of their own (``shards.thread``) when the
runtime is given a ``lease_store`` to make there, as the operator does, so a
busy event loop cannot make a renewal late. Order matters at both ends.
Start: the Lease rounds and the watch together;
a loop starts only once its object is listed *and* its shard owned, whichever
comes last. Stop: the Lease loop is cancelled first (no new shards), then
every object loop is stopped and awaited, and only then are the Leases
released, so no other replica takes a shard while a loop here still acts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import kr8s.asyncio

from modelcanary.dispatch.drill_loop import DrillWork, run_drill
from modelcanary.dispatch.events import EventPoster
from modelcanary.dispatch.feed import Feed
from modelcanary.dispatch.loops import (
    MODEL_DEPLOYMENT,
    ROLLBACK_DRILL,
    Dispatcher,
    ObjectKey,
    ObjectLoop,
)
from modelcanary.dispatch.model_loop import ModelDeploymentWork, run_model_deployment
from modelcanary.shards.leases import LeaseStore, ShardManager
from modelcanary.shards.ownership import Timing
from modelcanary.shards.thread import LeaseThread
from modelcanary.view import store as view
from modelcanary.view.store import DISPATCHED, Store
from modelcanary.view.watch import Watcher, stop


class ShardedRuntime:
    """One replica's share of the ModelDeployments and the loops that run it."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        lease_namespace: str,
        identity: str,
        shards: int,
        namespaces: Iterable[str] | None,
        model_work: ModelDeploymentWork,
        drill_work: DrillWork,
        timing: Timing | None = None,
        store: Store | None = None,
        on_model_deployment: Callable[[Mapping[str, Any]], None] | None = None,
        lease_store: Callable[[], Awaitable[LeaseStore]] | None = None,
    ) -> None:
        self.store = store if store is not None else Store()
        """The unselected watch's objects; ``model_work.read`` reads this store."""
        self.manager = ShardManager(api, lease_namespace, identity, shards, timing=timing)
        self.dispatcher = Dispatcher(
            self.manager.owns,
            {MODEL_DEPLOYMENT: self._run_model, ROLLBACK_DRILL: self._run_drill},
        )
        self.manager.on_change = self.dispatcher.ownership_changed
        self.feed = Feed(self.store, self.dispatcher, on_model_deployment=on_model_deployment)
        self.watcher = Watcher(
            api,
            self.store,
            lambda _owners: None,  # these objects carry no owner label: on_keys hears of them
            namespaces=namespaces,
            kinds=DISPATCHED,
            selector="",
            on_keys=self.feed.keys_changed,
        )
        self.events = EventPoster(api)
        """Events of the passes here (kopf's ``kopf.event`` needs kopf's own object tasks)."""
        self.model_work = model_work
        self.drill_work = drill_work
        self.lease_thread = LeaseThread(self.manager, lease_store) if lease_store else None
        """The Lease rounds on a thread of their own, over the store ``lease_store`` makes
        there (the operator's way); None: on this loop, over ``api`` (tests)."""
        self._leases_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._events_task: asyncio.Task[None] | None = None

    def read_model_deployment(self, namespace: str, name: str) -> dict[str, object] | None:
        return self.store.get(view.MODEL_DEPLOYMENT, namespace, name)

    def wake_model_deployment(self, namespace: str, name: str) -> None:
        """A drill started or ended, or the view saw its objects change: wake its loop."""
        self.dispatcher.wake(ObjectKey(MODEL_DEPLOYMENT, namespace, name))

    async def _run_model(self, loop: ObjectLoop) -> None:
        await run_model_deployment(loop, self.model_work)

    async def _run_drill(self, loop: ObjectLoop) -> None:
        await run_drill(loop, self.drill_work)

    def start(self) -> None:
        if self.lease_thread is not None:
            self.lease_thread.start()
        else:
            self._leases_task = asyncio.create_task(
                self.manager.run(), name="modelcanary-shard-leases"
            )
        self._watch_task = asyncio.create_task(
            self.watcher.run(), name="modelcanary-dispatched-watch"
        )
        self._events_task = asyncio.create_task(self.events.run(), name="modelcanary-events")

    async def stop(self) -> None:
        """Graceful: no new shards, every loop ended, then the Leases given up at once."""
        if self.lease_thread is not None:
            await self.lease_thread.stop_rounds()
        elif self._leases_task is not None:
            self._leases_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._leases_task
        await self.dispatcher.close()
        await self.feed.drain()
        if self.lease_thread is not None:
            await self.lease_thread.release()
        else:
            await self.manager.release()
        await stop(self._watch_task)
        await stop(self._events_task)
        await self.events.drain()
