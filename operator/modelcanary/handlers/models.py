"""One daemon per ModelDeployment: passes in a loop, woken by changes.

A pass (``reconcile.Reconciler``) observes, decides, acts and writes status
once; the daemon then sleeps for as long as the decision asked (a pause's
remainder, the next analysis, a deadline) or, with nothing due, until
something changes. A pass reads the object from kopf's live body and
everything else from the view (``view``). A watch event wakes the pass of the
ModelDeployment that owns the object (a Deployment's pods becoming ready, a
route edited by hand, a drill ending; ``startup``); a change of the spec or a
manual-action annotation wakes it through kopf (:func:`nudge`). So a new
predictor or a ``promote`` is seen in well under a second, and a Healthy
object at rest costs no API request at all (a safety resync every half hour
reads only the view).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf

from modelcanary import telemetry
from modelcanary.api.modeldeployment import GROUP, VERSION, ModelDeploymentSpec
from modelcanary.api.validation import InvalidSpecError, parse
from modelcanary.apierrors import API_ERRORS
from modelcanary.dispatch.slots import NextPass, PassSlots, Priority, first_pass_priority
from modelcanary.handlers import state
from modelcanary.kopf_tuning import idle, json_copy
from modelcanary.passes import remaining
from modelcanary.reconcile import PassResult, Reconciler
from modelcanary.rollout.actions import ANNOTATION
from modelcanary.rollout.decision import Action, Event
from modelcanary.view.wake import owner_for
from modelcanary.view.watch import Watcher

PLURAL = "modeldeployments"
ERROR_BACKOFF_SECONDS = 5.0
VIEW_READY_SECONDS = 30.0
"""How long a daemon's first pass waits for the view's first LISTs; after that it
reads what is not listed yet from the API server."""

log = logging.getLogger(__name__)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def rollout(
    *,
    namespace: str | None,
    name: str,
    uid: str,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Run passes for one ModelDeployment until it is deleted or the operator stops."""
    assert namespace is not None  # the resource is namespaced
    wake = state.wakeups.setdefault(uid, asyncio.Event())
    owner = owner_for(namespace, name)
    state.routes.register(owner, uid)
    reconciler: Reconciler = memo.reconciler
    slots: PassSlots = memo.pass_slots
    watcher: Watcher = memo.watcher
    try:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watcher.ready.wait(), timeout=VIEW_READY_SECONDS)
        priority = first_pass_priority(body)
        while not stopped:
            wake.clear()
            async with slots.take(priority):
                upcoming = await one_pass(reconciler, body)
            if not await idle(wake, stopped, upcoming.delay):
                break
            priority = upcoming.priority(woken=wake.is_set())
    finally:
        state.routes.unregister(owner, uid)
        state.wakeups.pop(uid, None)
        state.seen_generation.pop(uid, None)
        reconciler.forget(uid)


async def one_pass(reconciler: Reconciler, body: Mapping[str, Any]) -> NextPass:
    """One pass on kopf's live body of the object; when the next is due, and how urgent."""
    # kopf keeps the body current from its own watch; the pass takes a copy so
    # an event arriving mid-pass cannot change what it decides on.
    obj = json_copy(dict(body))
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    with telemetry.RECONCILE_SECONDS.time():
        try:
            started = time.monotonic()
            result = await reconciler.run_pass(obj)
        except API_ERRORS as error:
            telemetry.RECONCILE_ERRORS.labels(namespace, name, "pass").inc()
            log.warning("%s/%s: pass failed: %s", namespace, name, error)
            return NextPass(ERROR_BACKOFF_SECONDS, Priority.DUE)
    report(obj, result)
    if result.failed is not None:
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "act").inc()
        return NextPass(min(result.decision.requeue_after, ERROR_BACKOFF_SECONDS), Priority.DUE)
    requeue = result.decision.requeue_after
    return NextPass.after(remaining(requeue, since=started), requeue_after=requeue)


def reference(obj: Mapping[str, Any]) -> kopf.Body:
    metadata = obj["metadata"]
    return kopf.Body(
        cast(
            kopf.RawBody,
            {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "metadata": {
                    "namespace": metadata["namespace"],
                    "name": metadata["name"],
                    "uid": metadata["uid"],
                },
            },
        )
    )


def post(target: kopf.Body, events: Iterable[Event], failed: tuple[Action, str] | None) -> None:
    # kopf.event only works in kopf's own object tasks; sharded mode posts its own.
    send = state.sharded.events.post if state.sharded is not None else kopf.event
    for event in events:
        send(target, type=event.type, reason=event.reason, message=event.message)
    if failed is not None:
        action, error = failed
        send(
            target,
            type="Warning",
            reason="ActionFailed",
            message=f"{type(action).__name__} failed: {error}",
        )


def report(obj: Mapping[str, Any], result: PassResult) -> None:
    metadata = obj["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    decision = result.decision
    target = reference(obj)
    post(target, decision.events, result.failed)
    telemetry.record_status(namespace, name, decision.status)
    telemetry.record_events(namespace, name, [e.reason for e in decision.events])
    if result.rollback_seconds is not None:
        telemetry.TIME_TO_ROLLBACK.labels(namespace).observe(result.rollback_seconds)


@kopf.on.event(GROUP, VERSION, PLURAL)
async def nudge(uid: str, body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    """Wake the daemon when a person changed something: the spec, or an action.

    Every event is also the echo of a write of ours, or later than it: the answer
    kept for that write can go (``OwnWrites.seen``). Async, so on the event loop:
    kopf runs a plain function in a thread, where neither the kept answers nor
    the daemon's ``asyncio.Event`` may be touched."""
    reconciler: Reconciler | None = getattr(memo, "reconciler", None)
    if reconciler is not None:
        reconciler.own_writes.seen(body)
    generation = body.get("metadata", {}).get("generation")
    annotations = body.get("metadata", {}).get("annotations") or {}
    changed = state.seen_generation.get(uid) != generation
    state.seen_generation[uid] = generation
    wake = state.wakeups.get(uid)
    if wake is not None and (changed or ANNOTATION in annotations):
        wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Give a user's HTTPRoute back as it was; Deployments go with their owner."""
    assert namespace is not None  # the resource is namespaced
    await give_back(memo.reconciler, body)


async def give_back(reconciler: Reconciler, body: Mapping[str, Any]) -> None:
    """A deleted ModelDeployment's clean-up, kopf's or a sharded loop's."""
    metadata = body["metadata"]
    telemetry.forget(metadata["namespace"], metadata["name"])
    try:
        spec = parse(ModelDeploymentSpec, dict(body.get("spec") or {}), prefix="spec")
    except InvalidSpecError:
        return
    router = reconciler.router_of(body, spec)
    await router.finalize()


# -- rollback drills ---------------------------------------------------------------
