"""A ModelDeployment's loop in sharded mode: its finalizer, its passes, its deletion.

What kopf's daemon and delete handler did, run by the dispatcher in the one
replica that owns the object's shard:

* the object is read from the unselected watch's store (the newest version it
  accepted), never from kopf;
* before its first pass the loop adds ``modelcanary.io/finalizer``, so a
  deletion waits for the route to be given back; a pass never acts on an
  object without it; the write takes a pass slot, as a pass does;
* with a ``deletionTimestamp``, the loop gives the user's HTTPRoute back and
  removes the finalizer, and runs no more passes; the API server then deletes
  the object, and the feed stops the loop;
* after a pass, the drill CronJob is made to match ``spec.drill`` when that
  changed (what kopf's ``spec.drill`` change handlers did);
* between passes it sleeps as long as the pass asked, woken by the feed;
* before every step it asks :meth:`ObjectLoop.owns`: a shard that lapsed or
  is being released ends the loop, whatever the step.

The pass itself, its reporting (events, metrics) and the route's return are
given by ``handlers``: this module knows no kopf.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kr8s.asyncio.objects import APIObject

from modelcanary.apierrors import API_ERRORS
from modelcanary.dispatch.loops import ObjectLoop
from modelcanary.dispatch.slots import NextPass, PassSlots, Priority, first_pass_priority
from modelcanary.view.store import known_newer
from modelcanary.workloads.finalizer import FINALIZER, set_finalizer

log = logging.getLogger(__name__)


class ScheduleDrills(Protocol):
    """Makes the drill CronJob match ``spec.drill``; False: try again later."""

    def __call__(self, obj: Mapping[str, Any], /, *, first: bool) -> Awaitable[bool]: ...


@dataclass(frozen=True)
class ModelDeploymentWork:
    """What a ModelDeployment's loop needs from the operator."""

    read: Callable[[str, str], Mapping[str, Any] | None]
    """The newest copy of namespace/name the watch holds (None: gone)."""
    one_pass: Callable[[Mapping[str, Any]], Awaitable[NextPass]]
    """One pass, reported; when the next one is due, and how urgent it is then."""
    give_back: Callable[[Mapping[str, Any]], Awaitable[None]]
    """A deleted object's clean-up: the user's HTTPRoute as it was."""
    resource: Callable[[Mapping[str, Any]], APIObject]
    slots: PassSlots
    """At most this many passes at once, across every loop (``--max-concurrent-passes``)."""
    schedule_drills: ScheduleDrills | None = None
    """Make the drill CronJob match ``spec.drill`` (none without it); False: try again later.

    kopf ran this on a change of the field; here the loop runs it when
    ``spec.drill`` differs from what it last applied, and once when it
    starts (a new owner does not know what the last one applied; the apply is
    idempotent). ``first`` says it is that once: the loop has applied nothing
    yet, so for an object without ``spec.drill`` it is a check that no
    schedule was left, not a removal asked for."""
    retry_seconds: float = 5.0
    """After a failed write of the finalizer, or a clean-up that failed."""
    forget: Callable[[str, str, str], None] | None = None
    """Called with (namespace, name, uid) when the object's loop ends (gone, finalized,
    or the shard moved away): drop what this replica kept and exports for it (the
    reconciler's own writes, the status gauges; the new owner exports them now)."""


async def run_model_deployment(loop: ObjectLoop, work: ModelDeploymentWork) -> None:
    """Until the object is gone, finalized, or the loop is told to stop."""
    uids: set[str] = set()
    try:
        await _run(loop, work, uids)
    finally:
        if work.forget is not None:
            for uid in uids:
                work.forget(loop.key.namespace, loop.key.name, uid)


async def _run(loop: ObjectLoop, work: ModelDeploymentWork, uids: set[str]) -> None:
    namespace, name = loop.key.namespace, loop.key.name
    # The API server's answer to this loop's last finalizer write: the watch may lag it.
    answer: Mapping[str, Any] | None = None
    drill_applied: list[Any] = []  # [spec.drill] once applied by this loop
    priority: Priority | None = None  # the next pass's; None: its first, judged by its status
    while loop.owns():
        obj = work.read(namespace, name)
        if obj is None:
            return
        if answer is not None and known_newer(answer, obj):
            obj = answer
        metadata = obj.get("metadata") or {}
        if metadata.get("uid"):
            uids.add(str(metadata["uid"]))
        finalizers = metadata.get("finalizers") or []
        if metadata.get("deletionTimestamp"):
            if FINALIZER not in finalizers:
                return  # someone else's finalizer holds it: nothing of ours is left
            if await _finalize(loop, work, obj):
                return
            await loop.sleep(work.retry_seconds)
            continue
        if FINALIZER not in finalizers:
            # In a pass slot, as the passes' requests are: a thousand new objects'
            # finalizer writes at once queued in the shared HTTP pool, whose
            # matching of waiting requests to connections grows with the square of
            # the queue (a third of the ramp's CPU, and no status for 25 s).
            async with work.slots.take(first_pass_priority(obj)):
                answer = await _write_finalizer(loop, work, obj, keep=True)
            if answer is None:
                await loop.sleep(work.retry_seconds)
            continue  # the next step acts on the object with the finalizer
        if priority is None:
            priority = first_pass_priority(obj)
        async with work.slots.take(priority):
            if not loop.owns():
                return
            upcoming = await work.one_pass(obj)
            delay = await _schedule_drills(loop, work, obj, drill_applied, upcoming.delay)
        priority = upcoming.priority(woken=await loop.sleep(delay))


async def _schedule_drills(
    loop: ObjectLoop,
    work: ModelDeploymentWork,
    obj: Mapping[str, Any],
    drill_applied: list[Any],
    delay: float,
) -> float:
    """After a pass: the drill CronJob, when ``spec.drill`` is not what this loop applied.

    ``drill_applied`` holds the applied ``spec.drill`` (empty before the first
    apply) and is updated; returns the delay, shortened to retry a failed apply.
    """
    drill = (obj.get("spec") or {}).get("drill")
    if work.schedule_drills is None or drill_applied == [drill] or not loop.owns():
        return delay
    if await work.schedule_drills(obj, first=not drill_applied):
        drill_applied[:] = [drill]
        return delay
    return min(delay, work.retry_seconds)


async def _finalize(loop: ObjectLoop, work: ModelDeploymentWork, obj: Mapping[str, Any]) -> bool:
    """Give the route back, then remove the finalizer; False when either must be retried."""
    try:
        async with work.slots.take(Priority.DUE):  # a person's deletion
            if not loop.owns():
                return True  # the new owner finalizes it
            await work.give_back(obj)
    except API_ERRORS as error:
        log.warning("%s/%s: giving the route back failed: %s", *_where(loop), error)
        return False
    return await _write_finalizer(loop, work, obj, keep=False) is not None


async def _write_finalizer(
    loop: ObjectLoop, work: ModelDeploymentWork, obj: Mapping[str, Any], *, keep: bool
) -> Mapping[str, Any] | None:
    """The object as the API server answered (as read, if nothing needed writing); None
    when the write was refused (the list moved, the object is gone) or failed."""
    if not loop.owns():
        return None
    resource = work.resource(obj)
    try:
        if await set_finalizer(resource, obj["metadata"], keep=keep):
            return dict(resource.raw)
    except API_ERRORS as error:
        log.warning("%s/%s: writing the finalizer failed: %s", *_where(loop), error)
    return None


def _where(loop: ObjectLoop) -> tuple[str, str]:
    return loop.key.namespace, loop.key.name
