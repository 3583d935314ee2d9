"""RollbackDrills: a daemon per unfinished drill, and the CronJob that creates them.

A RollbackDrill gets a daemon of its own while it is not finished
(``drill_executor``); when a drill ends, it wakes its ModelDeployment's daemon,
which records the result in the ModelDeployment's status. ``spec.drill`` is
handled by change handlers, not by the loop: a CronJob is created, updated or
removed when that field changes, which costs nothing in the steady state.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import kopf
import kr8s

from modelcanary import __version__, telemetry
from modelcanary.api.modeldeployment import GROUP, VERSION, DrillSchedule
from modelcanary.api.validation import InvalidSpecError, parse
from modelcanary.apierrors import API_ERRORS
from modelcanary.drill_executor import DrillExecutor, DrillPassResult
from modelcanary.drills.ending import FINISHED
from modelcanary.handlers import state
from modelcanary.handlers.models import ERROR_BACKOFF_SECONDS, PLURAL, post, reference
from modelcanary.passes import RollbackDrillResource, remaining
from modelcanary.reconcile import Reconciler
from modelcanary.workloads.drill_schedule import (
    DrillScheduleConflict,
    apply_drill_schedule,
    remove_drill_schedule,
)

DRILLS = "rollbackdrills"
DEFAULT_IMAGE = f"ghcr.io/modelcanary/modelcanary:{__version__}"

log = logging.getLogger(__name__)


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
            delay = await one_drill_pass(executor, namespace, name)
        except API_ERRORS as error:
            log.warning("%s/%s: drill pass failed: %s", namespace, name, error)
            await stopped.wait(ERROR_BACKOFF_SECONDS)
            continue
        if delay is None:
            return
        await stopped.wait(delay)


async def one_drill_pass(executor: DrillExecutor, namespace: str, name: str) -> float | None:
    """One drill pass, reported; seconds until the next, None when finished or gone."""
    try:
        resource = await RollbackDrillResource.get(name, namespace=namespace, api=executor.api)
    except kr8s.NotFoundError:
        return None
    started = time.monotonic()
    result = await executor.run_pass(resource.raw)
    report_drill(resource.raw, result)
    if result.finished:
        return None
    return remaining(result.decision.requeue_after, since=started)


def report_drill(obj: Mapping[str, Any], result: DrillPassResult) -> None:
    target = reference(obj)
    namespace = obj["metadata"]["namespace"]
    post(target, result.decision.events, result.failed)
    summary = result.decision.summary
    md_name = str((obj.get("spec") or {}).get("modelDeployment", ""))
    if summary is not None:
        telemetry.record_drill(namespace, md_name, summary)
    if result.finished or result.decision.status.phase.value != (obj.get("status") or {}).get(
        "phase"
    ):
        # The ModelDeployment pass records results and owns the split's
        # repair; a drill that started or ended changes both.
        wake = state.wakeups.get(result.model_deployment_uid or "")
        if wake is not None:
            wake.set()
        if state.sharded is not None and md_name:
            state.sharded.wake_model_deployment(namespace, md_name)


@kopf.on.create(GROUP, VERSION, PLURAL, field="spec.drill")
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec.drill")
@kopf.on.resume(GROUP, VERSION, PLURAL, field="spec.drill")
async def schedule_drills(
    body: kopf.Body, namespace: str | None, name: str, uid: str, memo: kopf.Memo, **_: Any
) -> None:
    """Own the CronJob that creates RollbackDrills on ``spec.drill.schedule``; none without it."""
    assert namespace is not None  # the resource is namespaced
    try:
        await match_drill_schedule(memo, body)
    except DrillScheduleConflict as conflict:
        # Someone else's object holds the name; it may be removed, so look again later.
        raise kopf.TemporaryError(str(conflict), delay=60) from conflict


async def match_drill_schedule(
    memo: kopf.Memo, body: Mapping[str, Any], *, changed: bool = True
) -> None:
    """Make the drill CronJob match ``spec.drill`` (kopf's change handler or a sharded loop).

    ``changed`` False: not a change of ``spec.drill`` but a loop's first look at
    it, which for an object without one removes a schedule only if its CronJob
    is there, as the view sees it (``remove_drill_schedule``'s ``only_if_scheduled``)."""
    reconciler: Reconciler = memo.reconciler
    metadata = body["metadata"]
    namespace, name = metadata["namespace"], metadata["name"]
    raw = (body.get("spec") or {}).get("drill")
    if raw is None:
        await remove_drill_schedule(
            reconciler.api,
            md_name=name,
            namespace=namespace,
            only_if_scheduled=not changed,
            view=reconciler.view,
        )
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
