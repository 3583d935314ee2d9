"""Sharded mode's moving parts, put together: Leases, the unselected watch, the loops.

``handlers`` builds one :class:`ShardedRuntime` at start-up when ``run`` was
given ``--shards`` (and then registers no per-object kopf handler), starts
it, and stops it at clean-up. Everything here is kopf-free; what is kopf's
(posting events) comes in through the work objects.

Order matters at both ends. Start: the Lease loop and the watch together;
a loop starts only once its object is listed *and* its shard owned, whichever
comes last. Stop: the Lease loop is cancelled first (no new shards), then
every object loop is stopped and awaited, and only then are the Leases
released, so no other replica takes a shard while a loop here still acts.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterable, Mapping
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
from modelcanary.shards.leases import ShardManager
from modelcanary.shards.ownership import Timing
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
        self._tasks: list[asyncio.Task[None]] = []

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
        self._tasks = [
            asyncio.create_task(self.manager.run(), name="modelcanary-shard-leases"),
            asyncio.create_task(self.watcher.run(), name="modelcanary-dispatched-watch"),
            asyncio.create_task(self.events.run(), name="modelcanary-events"),
        ]

    async def stop(self) -> None:
        """Graceful: no new shards, every loop ended, then the Leases given up at once."""
        leases, watch, events = self._tasks or (None, None, None)
        if leases is not None:
            leases.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await leases
        await self.dispatcher.close()
        await self.feed.drain()
        await self.manager.release()
        await stop(watch)
        await stop(events)
        await self.events.drain()
