"""From the watches of ModelDeployments and RollbackDrills to the dispatcher's loops.

In sharded mode a :class:`~modelcanary.view.watch.Watcher` over
:data:`~modelcanary.view.store.DISPATCHED`, with no label selector, tells
:meth:`Feed.keys_changed` every key an event or a LIST touched; the feed reads
the object from that watcher's store (the newest the store accepted, so an
older event never wins) and says to the dispatcher:

* a loop is wanted, with this owner key: every ModelDeployment that exists
  (its deletion needs its loop: the loop gives the route back and removes the
  finalizer), and every RollbackDrill not finished, owned by its
  ModelDeployment's shard (a drill without one is owned by its own name, so
  some replica refuses it);
* no loop: the object is gone, or a drill has finished.

A running loop is woken only for what a person changed, as ``handlers.nudge``
does for kopf's daemons: a new generation (the spec), a pending action
annotation, a deletion. Not for its own status writes: each would otherwise
run one more pass for nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Any

from modelcanary.dispatch.loops import Dispatcher, ObjectKey
from modelcanary.drills.ending import FINISHED
from modelcanary.rollout.actions import ANNOTATION
from modelcanary.view.store import DRILL, MODEL_DEPLOYMENT, Key, Kind, Owner, Store
from modelcanary.view.wake import WakeRoutes, owner_for

log = logging.getLogger(__name__)

_FINISHED_PHASES = frozenset(phase.value for phase in FINISHED)

Signature = tuple[Any, bool]
"""(generation, being deleted): a change in either wakes the loop."""


def loop_owner(kind: Kind, obj: Mapping[str, Any] | None) -> tuple[str, str] | None:
    """The owner key of ``obj``'s loop (whose shard runs it), or None: it wants no loop."""
    if obj is None:
        return None
    metadata = obj.get("metadata") or {}
    namespace, name = str(metadata.get("namespace") or ""), str(metadata.get("name") or "")
    if kind == MODEL_DEPLOYMENT:
        return namespace, name
    if kind == DRILL:
        if (obj.get("status") or {}).get("phase") in _FINISHED_PHASES:
            return None
        md_name = (obj.get("spec") or {}).get("modelDeployment")
        return (namespace, str(md_name)) if md_name else (namespace, name)
    return None


def _signature(obj: Mapping[str, Any]) -> Signature:
    metadata = obj.get("metadata") or {}
    return metadata.get("generation"), bool(metadata.get("deletionTimestamp"))


class Feed:
    """Turns the changed keys of the unselected watches into the dispatcher's calls."""

    def __init__(
        self,
        store: Store,
        dispatcher: Dispatcher,
        *,
        on_model_deployment: Callable[[Mapping[str, Any]], None] | None = None,
    ) -> None:
        self.store = store
        self.dispatcher = dispatcher
        self.on_model_deployment = on_model_deployment
        """Told of every ModelDeployment the watch delivers (``OwnWrites.seen``)."""
        self._seen: dict[ObjectKey, tuple[tuple[str, str], Signature]] = {}
        self._forgetting: set[asyncio.Task[None]] = set()
        self._routes = WakeRoutes()
        """The labelled view's owners -> the ModelDeployments ("namespace/name") to wake."""

    def keys_changed(self, kind: Kind, keys: set[Key]) -> None:
        """The watcher's ``on_keys``: start, wake or stop the loops of these objects."""
        for _, namespace, name in sorted(keys):
            key = ObjectKey(kind.kind, namespace, name)
            obj = self.store.get(kind, namespace, name)
            owner = loop_owner(kind, obj)
            if obj is None or owner is None:
                if self._seen.pop(key, None) is not None:
                    self._forget(key)
                    if kind == MODEL_DEPLOYMENT:
                        self._routes.unregister(owner_for(namespace, name), f"{namespace}/{name}")
                continue
            if kind == MODEL_DEPLOYMENT:
                self._routes.register(owner_for(namespace, name), f"{namespace}/{name}")
                if self.on_model_deployment is not None:
                    self.on_model_deployment(obj)
            seen = self._seen.get(key)
            now = (owner, _signature(obj))
            self._seen[key] = now
            pending_action = ANNOTATION in ((obj.get("metadata") or {}).get("annotations") or {})
            if seen != now or pending_action:
                self.dispatcher.observed(key, owner)

    def wake_owners(self, owners: set[Owner]) -> None:
        """The labelled view's ``on_change``: wake the loops of the ModelDeployments whose
        Deployments, Services, HPAs, routes or drills changed (``handlers.startup._wake_owners``
        for kopf's daemons)."""
        for target in self._routes.targets(owners):
            namespace, name = target.split("/", 1)
            self.dispatcher.wake(ObjectKey(MODEL_DEPLOYMENT.kind, namespace, name))

    async def drain(self) -> None:
        """Wait for the stops already asked for (tests; the operator's shutdown)."""
        while self._forgetting:
            await asyncio.gather(*self._forgetting)

    def _forget(self, key: ObjectKey) -> None:
        task = asyncio.ensure_future(self.dispatcher.forgotten(key))
        self._forgetting.add(task)
        task.add_done_callback(self._forgetting.discard)
