"""kopf wiring: the only module that imports kopf.

One daemon per ModelDeployment runs passes (``reconcile.Reconciler``) in a
loop: observe, decide, act, write status once, then sleep for as long as the
decision asked (a pause's remainder, the next analysis, or an idle minute).
A change of the spec or a manual-action annotation wakes it at once, so a new
predictor or a ``promote`` is seen in well under a second, while the steady
state costs two API calls per object per idle interval.

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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any, cast

import kopf
import kr8s
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
from modelcanary.drill_executor import DrillExecutor, DrillPassResult
from modelcanary.drills.plan import FINISHED
from modelcanary.passes import ModelDeploymentResource, RollbackDrillResource, remaining
from modelcanary.reconcile import PassResult, Reconciler
from modelcanary.rollout.actions import ANNOTATION
from modelcanary.rollout.decision import Action, Event
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

log = logging.getLogger(__name__)
_wakeups: dict[str, asyncio.Event] = {}
_seen_generation: dict[str, int | None] = {}


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
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
    memo.reconciler = Reconciler(api)
    slots = getattr(memo, "max_concurrent_passes", None) or DEFAULT_MAX_CONCURRENT_PASSES
    memo.pass_slots = asyncio.Semaphore(int(slots))
    memo.drills = DrillExecutor(memo.reconciler)
    port = getattr(memo, "metrics_port", None)
    if port:
        start_http_server(int(port), registry=telemetry.REGISTRY)


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=10.0)
async def rollout(
    namespace: str | None,
    name: str,
    uid: str,
    stopped: kopf.DaemonStopped,
    memo: kopf.Memo,
    **_: Any,
) -> None:
    """Run passes for one ModelDeployment until it is deleted or the operator stops."""
    assert namespace is not None  # the resource is namespaced
    wake = _wakeups.setdefault(uid, asyncio.Event())
    reconciler: Reconciler = memo.reconciler
    slots: asyncio.Semaphore = memo.pass_slots
    try:
        while not stopped:
            wake.clear()
            async with slots:
                delay = await _one_pass(reconciler, namespace, name)
            if delay is None:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
    finally:
        _wakeups.pop(uid, None)
        _seen_generation.pop(uid, None)


async def _one_pass(reconciler: Reconciler, namespace: str, name: str) -> float | None:
    """One pass on a fresh read of the object; returns seconds to sleep (None: it is gone)."""
    with telemetry.RECONCILE_SECONDS.time():
        try:
            resource = await ModelDeploymentResource.get(
                name, namespace=namespace, api=reconciler.api
            )
        except kr8s.NotFoundError:
            return None
        except API_ERRORS as error:
            telemetry.RECONCILE_ERRORS.labels(namespace, name, "read").inc()
            log.warning("%s/%s: cannot read: %s", namespace, name, error)
            return ERROR_BACKOFF_SECONDS
        obj = resource.raw
        started = time.monotonic()
        try:
            result = await reconciler.run_pass(obj)
        except API_ERRORS as error:
            telemetry.RECONCILE_ERRORS.labels(namespace, name, "pass").inc()
            log.warning("%s/%s: pass failed: %s", namespace, name, error)
            return ERROR_BACKOFF_SECONDS
    _report(obj, result)
    if result.failed is not None:
        telemetry.RECONCILE_ERRORS.labels(namespace, name, "act").inc()
        return min(result.decision.requeue_after, ERROR_BACKOFF_SECONDS)
    return remaining(result.decision.requeue_after, since=started)


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
    for event in events:
        kopf.event(reference, type=event.type, reason=event.reason, message=event.message)
    if failed is not None:
        action, error = failed
        kopf.event(
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
def nudge(uid: str, body: kopf.Body, **_: Any) -> None:
    """Wake the daemon when a person changed something: the spec, or an action."""
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
    telemetry.forget(namespace, name)
    try:
        spec = parse(ModelDeploymentSpec, dict(body.get("spec") or {}), prefix="spec")
    except InvalidSpecError:
        return
    reconciler: Reconciler = memo.reconciler
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
            resource = await RollbackDrillResource.get(name, namespace=namespace, api=executor.api)
            started = time.monotonic()
            result = await executor.run_pass(resource.raw)
        except kr8s.NotFoundError:
            return
        except API_ERRORS as error:
            log.warning("%s/%s: drill pass failed: %s", namespace, name, error)
            await stopped.wait(ERROR_BACKOFF_SECONDS)
            continue
        _report_drill(resource.raw, result)
        if result.finished:
            return
        await stopped.wait(remaining(result.decision.requeue_after, since=started))


def _report_drill(obj: Mapping[str, Any], result: DrillPassResult) -> None:
    reference = _reference(obj)
    namespace = obj["metadata"]["namespace"]
    _post(reference, result.decision.events, result.failed)
    summary = result.decision.summary
    if summary is not None:
        md_name = str((obj.get("spec") or {}).get("modelDeployment", ""))
        telemetry.record_drill(namespace, md_name, summary)
    if result.finished or result.decision.status.phase.value != (obj.get("status") or {}).get(
        "phase"
    ):
        # The ModelDeployment pass records results and owns the split's
        # repair; a drill that started or ended changes both.
        wake = _wakeups.get(result.model_deployment_uid or "")
        if wake is not None:
            wake.set()


@kopf.on.create(GROUP, VERSION, PLURAL, field="spec.drill")
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.drill")
@kopf.on.resume(GROUP, VERSION, PLURAL, field="spec.drill")
async def schedule_drills(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any
) -> None:
    """Own the CronJob that creates RollbackDrills on ``spec.drill.schedule``; none without it."""
    assert namespace is not None  # the resource is namespaced
    reconciler: Reconciler = memo.reconciler
    raw = (body.get("spec") or {}).get("drill")
    if raw is None:
        await remove_drill_schedule(reconciler.api, md_name=name, namespace=namespace)
        return
    try:
        drill = parse(DrillSchedule, dict(raw), prefix="spec.drill")
    except InvalidSpecError:
        return  # the ModelDeployment pass reports it as InvalidSpec
    image = getattr(memo, "drill_image", None) or DEFAULT_IMAGE
    try:
        await apply_drill_schedule(
            reconciler.api,
            md_name=name,
            md_uid=uid,
            namespace=namespace,
            drill=drill,
            image=image,
        )
    except DrillScheduleConflict as conflict:
        # Someone else's object holds the name; it may be removed, so look again later.
        raise kopf.TemporaryError(str(conflict), delay=60) from conflict
