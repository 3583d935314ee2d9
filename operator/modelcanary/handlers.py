"""kopf wiring: with ``kopf_tuning`` (kopf's per-event costs), the only module that imports kopf.

One daemon per ModelDeployment runs passes (``reconcile.Reconciler``) in a
loop: observe, decide, act, write status once, then sleep for as long as the
decision asked (a pause's remainder, the next analysis, a deadline) or, with
nothing due, until something changes. A pass reads the object from kopf's
live body and everything else from the view (``view``): label-selected
watches of the revisions' Deployments, HPAs and Services, the drills and the
HTTPRoutes, started here at start-up. A watch event wakes the pass of the
ModelDeployment that owns the object (a Deployment's pods becoming ready, a
route edited by hand, a drill ending); a change of the spec or a
manual-action annotation wakes it through kopf. So a new predictor or a
``promote`` is seen in well under a second, and a Healthy object at rest
costs no API request at all (a safety resync every half hour reads only
the view).

A RollbackDrill gets a daemon of its own while it is not finished
(``drill_executor``); when a drill ends, it wakes its ModelDeployment's daemon,
which records the result in the ModelDeployment's status. ``spec.drill`` is
handled by change handlers, not by the loop: a CronJob is created, updated or
removed when that field changes, which costs nothing in the steady state.

At most ``--max-concurrent-passes`` passes run at once. Every daemon shares
kr8s's one HTTP client, whose connection pool matches each waiting request
against each connection whenever one starts or ends: with a thousand daemons
firing at once, that matching cost grows with the square of the queue and
ate a whole core before any object got a status. A short queue of passes
keeps the pool's queue short; a pass is a few milliseconds of API calls, so
the wait for a slot is far below an analysis interval.

kopf's own bookkeeping (finalizer, progress and last-handled configuration)
lives under the ``modelcanary.io`` prefix, so nothing in a user's objects says
``kopf.zalando.org``.

Sharded mode (``run --shards N``, docs/sharding.md) gives kopf the
:data:`SHARDED` registry instead: log-in, start-up and clean-up only, no
per-object handler, so kopf never
writes a ModelDeployment. The passes, the finalizer, the drills and the drill
schedule then run in :class:`~modelcanary.dispatch.runtime.ShardedRuntime`'s
loops, in the replica that owns each object's shard, with the same pass and
reporting as below.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import httpx
import kopf
import kr8s.asyncio
from prometheus_client import start_http_server

from modelcanary import __version__, ratelimit, telemetry
from modelcanary.api.modeldeployment import (
    GROUP,
    VERSION,
    DrillSchedule,
    ModelDeploymentSpec,
)
from modelcanary.api.validation import InvalidSpecError, parse
from modelcanary.apierrors import API_ERRORS
from modelcanary.dispatch.drill_loop import DrillWork
from modelcanary.dispatch.model_loop import ModelDeploymentWork
from modelcanary.dispatch.runtime import ShardedRuntime
from modelcanary.dispatch.slots import NextPass, PassSlots, Priority, first_pass_priority
from modelcanary.drill_executor import DrillExecutor, DrillPassResult
from modelcanary.drills.plan import FINISHED
from modelcanary.kopf_tuning import SpecEssenceStorage, idle, quiet_every_event_handlers
from modelcanary.passes import ModelDeploymentResource, RollbackDrillResource, remaining
from modelcanary.reconcile import PassResult, Reconciler
from modelcanary.rollout.actions import ANNOTATION
from modelcanary.rollout.decision import Action, Event
from modelcanary.shards.ownership import Timing
from modelcanary.view.store import MODEL_DEPLOYMENT, Owner, Store
from modelcanary.view.wake import WakeRoutes, owner_for
from modelcanary.view.watch import View, Watcher, stop
from modelcanary.workloads.drill_schedule import (
    DrillScheduleConflict,
    apply_drill_schedule,
    remove_drill_schedule,
)

PLURAL = "modeldeployments"
DRILLS = "rollbackdrills"
DEFAULT_IMAGE = f"ghcr.io/modelcanary/modelcanary:{__version__}"
PREFIX = "modelcanary.io"
ERROR_BACKOFF_SECONDS = 5.0
DEFAULT_MAX_CONCURRENT_PASSES = 8
VIEW_READY_SECONDS = 30.0
"""How long a daemon's first pass waits for the view's first LISTs; after that it
reads what is not listed yet from the API server."""

log = logging.getLogger(__name__)
_wakeups: dict[str, asyncio.Event] = {}
_seen_generation: dict[str, int | None] = {}
_routes = WakeRoutes()
_sharded: ShardedRuntime | None = None
"""Sharded mode's runtime, once started (None otherwise)."""

SHARDED = kopf.OperatorRegistry()
"""What ``run --shards`` gives kopf: start-up and clean-up, and no per-object handler.

kopf adds and removes its finalizer from every replica that has a handler
for the object (docs/sharding.md, "Wiring it in"); with none registered it
never writes a ModelDeployment or a RollbackDrill."""


@kopf.on.login(registry=SHARDED)
def _login(**kwargs: Any) -> kopf.ConnectionInfo | None:
    """As kopf's default registry logs in (a registry of our own starts with no login
    handler, and kopf would then refuse to start): through the kubernetes client's
    kubeconfig or in-cluster configuration."""
    return kopf.login_via_client(**kwargs)


def _wake_owners(owners: set[Owner]) -> None:
    """A watch event changed these owners' objects: wake their passes."""
    if _sharded is not None:
        _sharded.feed.wake_owners(owners)
    for uid in _routes.targets(owners):
        wake = _wakeups.get(uid)
        if wake is not None:
            wake.set()


def _count_requests(api: kr8s.asyncio.Api) -> None:
    """Count every request kr8s's client sends (``modelcanary_api_requests_total``)."""

    async def on_request(request: httpx.Request) -> None:
        watch = request.url.params.get("watch") == "true"
        telemetry.count_request("WATCH" if watch else request.method)

    ratelimit.on_every_request(api, on_request)


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    await _configure(settings, memo)


async def _configure(settings: kopf.OperatorSettings, memo: kopf.Memo) -> None:
    """Settings, the API client, the labelled view, the pass machinery: both modes'."""
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = SpecEssenceStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    quiet_every_event_handlers(["nudge"])
    # Ten minutes, client-go's longest: kopf's three watches reconnect and do nothing
    # else at rest (the view's own ask for 5 to 10, view/watch.py).
    settings.watching.server_timeout = 600
    settings.networking.request_timeout = 30
    api = await kr8s.asyncio.api()
    # (qps, burst) from `run`; None when turned off; the defaults when unset.
    limit = getattr(memo, "api_rate_limit", (ratelimit.DEFAULT_QPS, ratelimit.DEFAULT_BURST))
    if limit is not None:
        qps, burst = limit
        ratelimit.limit_api(
            api, ratelimit.RateLimiter(qps, burst), on_wait=telemetry.API_RATE_LIMIT_WAIT.observe
        )
        telemetry.API_RATE_LIMIT_QPS.set(qps)
    _count_requests(api)
    store = Store()
    memo.view = View(api, store)
    memo.watcher = Watcher(api, store, _wake_owners, namespaces=_watched(memo))
    memo.watch_task = asyncio.create_task(memo.watcher.run(), name="modelcanary-view")
    memo.reconciler = Reconciler(api, view=memo.view)
    slots = getattr(memo, "max_concurrent_passes", None) or DEFAULT_MAX_CONCURRENT_PASSES
    memo.pass_slots = PassSlots(int(slots))
    memo.drills = DrillExecutor(memo.reconciler)
    port = getattr(memo, "metrics_port", None)
    if port:
        start_http_server(int(port), registry=telemetry.REGISTRY)


def _watched(memo: kopf.Memo) -> list[str] | None:
    """The namespaces the view watches: kopf's, or all when kopf's are patterns
    (``ml-*``), which a watch cannot take; the passes select their own anyway."""
    namespaces = list(getattr(memo, "namespaces", None) or [])
    if not namespaces or any(set(ns) & set("*?[!") for ns in namespaces):
        return None
    return namespaces


@kopf.on.cleanup()
async def stop_watches(memo: kopf.Memo, **_: Any) -> None:
    await stop(getattr(memo, "watch_task", None))


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
    wake = _wakeups.setdefault(uid, asyncio.Event())
    owner = owner_for(namespace, name)
    _routes.register(owner, uid)
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
                upcoming = await _one_pass(reconciler, body)
            if not await idle(wake, stopped, upcoming.delay):
                break
            priority = upcoming.priority(woken=wake.is_set())
    finally:
        _routes.unregister(owner, uid)
        _wakeups.pop(uid, None)
        _seen_generation.pop(uid, None)
        reconciler.forget(uid)


async def _one_pass(reconciler: Reconciler, body: Mapping[str, Any]) -> NextPass:
    """One pass on kopf's live body of the object; when the next is due, and how urgent."""
    # kopf keeps the body current from its own watch; the pass takes a copy so
    # an event arriving mid-pass cannot change what it decides on.
    obj = copy.deepcopy(dict(body))
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    with telemetry.RECONCILE_SECONDS.time():
        try:
            started = time.monotonic()
            result = await reconciler.run_pass(obj)
        except API_ERRORS as error:
            telemetry.RECONCILE_ERRORS.labels(namespace, name, "pass").inc()
            log.warning("%s/%s: pass failed: %s", namespace, name, error)
            return NextPass(ERROR_BACKOFF_SECONDS, Priority.DUE)
    _report(obj, result)
    if result.failed is not None:
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "act").inc()
        return NextPass(min(result.decision.requeue_after, ERROR_BACKOFF_SECONDS), Priority.DUE)
    requeue = result.decision.requeue_after
    return NextPass.after(remaining(requeue, since=started), requeue_after=requeue)


def _reference(obj: Mapping[str, Any]) -> kopf.Body:
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


def _post(reference: kopf.Body, events: Iterable[Event], failed: tuple[Action, str] | None) -> None:
    # kopf.event only works in kopf's own object tasks; sharded mode posts its own.
    post = _sharded.events.post if _sharded is not None else kopf.event
    for event in events:
        post(reference, type=event.type, reason=event.reason, message=event.message)
    if failed is not None:
        action, error = failed
        post(
            reference,
            type="Warning",
            reason="ActionFailed",
            message=f"{type(action).__name__} failed: {error}",
        )


def _report(obj: Mapping[str, Any], result: PassResult) -> None:
    metadata = obj["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    decision = result.decision
    reference = _reference(obj)
    _post(reference, decision.events, result.failed)
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
    changed = _seen_generation.get(uid) != generation
    _seen_generation[uid] = generation
    wake = _wakeups.get(uid)
    if wake is not None and (changed or ANNOTATION in annotations):
        wake.set()


@kopf.on.delete(GROUP, VERSION, PLURAL)
async def finalize(
    body: kopf.Body, namespace: str | None, name: str, memo: kopf.Memo, **_: Any
) -> None:
    """Give a user's HTTPRoute back as it was; Deployments go with their owner."""
    assert namespace is not None  # the resource is namespaced
    await _give_back(memo.reconciler, body)


async def _give_back(reconciler: Reconciler, body: Mapping[str, Any]) -> None:
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


def _unfinished(status: kopf.Status, **_: Any) -> bool:
    return status.get("phase") not in {phase.value for phase in FINISHED}


# The pass that writes a terminal phase is the one that reports it (events,
# metrics, waking the ModelDeployment). That write ends the ``when`` filter,
# and kopf stops a daemon whose filter no longer matches: without a backoff it
# cancels at once, mid-report, and the drill's events and metrics were lost
# now and then. The backoff only signals ``stopped``, which the loop obeys
# once the pass is reported.
@kopf.daemon(
    GROUP,
    VERSION,
    DRILLS,
    when=_unfinished,
    cancellation_backoff=5.0,
    cancellation_timeout=10.0,
)
async def rehearse(
    namespace: str | None, name: str, stopped: kopf.DaemonStopped, memo: kopf.Memo, **_: Any
) -> None:
    """Carry one RollbackDrill through to its end; after a restart, from its recorded step."""
    assert namespace is not None  # the resource is namespaced
    executor: DrillExecutor = memo.drills
    while not stopped:
        try:
            delay = await _one_drill_pass(executor, namespace, name)
        except API_ERRORS as error:
            log.warning("%s/%s: drill pass failed: %s", namespace, name, error)
            await stopped.wait(ERROR_BACKOFF_SECONDS)
            continue
        if delay is None:
            return
        await stopped.wait(delay)


async def _one_drill_pass(executor: DrillExecutor, namespace: str, name: str) -> float | None:
    """One drill pass, reported; seconds until the next, None when finished or gone."""
    try:
        resource = await RollbackDrillResource.get(name, namespace=namespace, api=executor.api)
    except kr8s.NotFoundError:
        return None
    started = time.monotonic()
    result = await executor.run_pass(resource.raw)
    _report_drill(resource.raw, result)
    if result.finished:
        return None
    return remaining(result.decision.requeue_after, since=started)


def _report_drill(obj: Mapping[str, Any], result: DrillPassResult) -> None:
    reference = _reference(obj)
    namespace = obj["metadata"]["namespace"]
    _post(reference, result.decision.events, result.failed)
    summary = result.decision.summary
    md_name = str((obj.get("spec") or {}).get("modelDeployment", ""))
    if summary is not None:
        telemetry.record_drill(namespace, md_name, summary)
    if result.finished or result.decision.status.phase.value != (obj.get("status") or {}).get(
        "phase"
    ):
        # The ModelDeployment pass records results and owns the split's
        # repair; a drill that started or ended changes both.
        wake = _wakeups.get(result.model_deployment_uid or "")
        if wake is not None:
            wake.set()
        if _sharded is not None and md_name:
            _sharded.wake_model_deployment(namespace, md_name)


@kopf.on.create(GROUP, VERSION, PLURAL, field="spec.drill")
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.drill")
@kopf.on.resume(GROUP, VERSION, PLURAL, field="spec.drill")
async def schedule_drills(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any
) -> None:
    """Own the CronJob that creates RollbackDrills on ``spec.drill.schedule``; none without it."""
    assert namespace is not None  # the resource is namespaced
    try:
        await _schedule(memo, body)
    except DrillScheduleConflict as conflict:
        # Someone else's object holds the name; it may be removed, so look again later.
        raise kopf.TemporaryError(str(conflict), delay=60) from conflict


async def _schedule(memo: kopf.Memo, body: Mapping[str, Any]) -> None:
    """Make the drill CronJob match ``spec.drill`` (kopf's change handler or a sharded loop)."""
    reconciler: Reconciler = memo.reconciler
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    raw = (body.get("spec") or {}).get("drill")
    if raw is None:
        await remove_drill_schedule(reconciler.api, md_name=name, namespace=namespace)
        return
    try:
        drill = parse(DrillSchedule, dict(raw), prefix="spec.drill")
    except InvalidSpecError:
        return  # the ModelDeployment pass reports it as InvalidSpec
    image = getattr(memo, "drill_image", None) or DEFAULT_IMAGE
    await apply_drill_schedule(
        reconciler.api,
        md_name=name,
        md_uid=metadata["uid"],
        namespace=namespace,
        drill=drill,
        image=image,
    )


# -- sharded mode -------------------------------------------------------------------


@kopf.on.startup(registry=SHARDED)
async def start_sharded(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    """What ``configure`` does, then this replica's shard Leases and object loops."""
    global _sharded  # noqa: PLW0603 - one runtime per process, like the wake routes
    await _configure(settings, memo)
    reconciler: Reconciler = memo.reconciler
    store = Store()

    async def schedule(body: Mapping[str, Any]) -> bool:
        try:
            await _schedule(memo, body)
        except DrillScheduleConflict as conflict:
            log.warning("%s", conflict)
            return False
        except API_ERRORS as error:
            log.warning("drill schedule: %s", error)
            return False
        return True

    model_work = ModelDeploymentWork(
        read=lambda namespace, name: store.get(MODEL_DEPLOYMENT, namespace, name),
        one_pass=lambda body: _one_pass(reconciler, body),
        give_back=lambda body: _give_back(reconciler, body),
        resource=lambda body: ModelDeploymentResource(dict(body), api=reconciler.api),
        slots=memo.pass_slots,
        schedule_drills=schedule,
        retry_seconds=ERROR_BACKOFF_SECONDS,
        forget=lambda namespace, name, uid: _forget(reconciler, namespace, name, uid),
    )
    drills: DrillExecutor = memo.drills
    _sharded = ShardedRuntime(
        reconciler.api,
        lease_namespace=memo.shard_namespace,
        identity=memo.shard_identity,
        shards=int(memo.shards),
        timing=Timing.scaled(float(getattr(memo, "shard_lease_seconds", None) or 15)),
        namespaces=_watched(memo),
        model_work=model_work,
        drill_work=DrillWork(
            one_pass=lambda namespace, name: _one_drill_pass(drills, namespace, name),
            retry_seconds=ERROR_BACKOFF_SECONDS,
        ),
        store=store,
        on_model_deployment=reconciler.own_writes.seen,
    )
    _sharded.start()


def _forget(reconciler: Reconciler, namespace: str, name: str, uid: str) -> None:
    """A sharded loop ended: the object is gone, or another replica runs it and exports
    its status now."""
    reconciler.forget(uid)
    telemetry.forget(namespace, name)


@kopf.on.cleanup(registry=SHARDED)
async def stop_sharded(memo: kopf.Memo, **_: Any) -> None:
    """Every loop ended, then the Leases released at once (the others take over in a round)."""
    global _sharded
    runtime, _sharded = _sharded, None
    if runtime is not None:
        await runtime.stop()
    await stop(getattr(memo, "watch_task", None))
