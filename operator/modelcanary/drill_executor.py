"""One pass of a rollback drill: observe, plan, act, write the drill's status once.

The drill's logic is the pure ``drills.plan``; this is its thin edge, the twin
of ``reconcile`` for RollbackDrills. It borrows the ModelDeployment's own
edges from the ``Reconciler`` (the same router, the same Deployment builders,
the same analysis queries), so a drill rehearses exactly the code a real
rollback runs, not a copy of it; and it acts and writes its status through
the same skeleton (``passes``), so the two passes cannot drift apart there.

It writes only the drill's status. The ModelDeployment's status stays with
the ModelDeployment's pass (one writer, one patch per pass), which records a
finished drill as ``lastDrill`` when it next looks; the handler wakes it.

Safety in the order of things: every status the drill moves through is
written before the next pass acts on it, so an operator killed at any point
restarts into a step that either resumes or puts the traffic back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import kr8s
import kr8s.asyncio

from modelcanary.api.modeldeployment import ModelDeploymentSpec
from modelcanary.api.names import LABEL_MODEL, model_label
from modelcanary.api.rollbackdrill import DrillPhase, RollbackDrillSpec, RollbackDrillStatus
from modelcanary.api.validation import InvalidSpecError, parse
from modelcanary.apierrors import API_OR_MISSING
from modelcanary.drills.ending import FINISHED
from modelcanary.drills.plan import (
    DrillDecision,
    DrillObservations,
    analysis_due,
    judges_counts,
    plan_drill,
)
from modelcanary.passes import (
    ModelDeploymentResource,
    PassState,
    RollbackDrillResource,
    carry_out_in_order,
    write_status,
)
from modelcanary.reconcile import Reconciler, acts
from modelcanary.rest import ObjectRef
from modelcanary.rollout.observations import RouterObservation
from modelcanary.rollout.status_reading import read_status
from modelcanary.traffic import Router
from modelcanary.view.drills import drills_of
from modelcanary.workloads import applier

log = logging.getLogger(__name__)


@dataclass
class DrillPassResult(PassState):
    decision: DrillDecision = field(kw_only=True)
    model_deployment_uid: str | None = None
    """Whose pass should look again (to record the drill's result)."""

    @property
    def finished(self) -> bool:
        return self.decision.status.phase in FINISHED


class DrillExecutor:
    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self.api: kr8s.asyncio.Api = reconciler.api

    async def run_pass(
        self, obj: Mapping[str, Any], *, now: datetime | None = None
    ) -> DrillPassResult:
        now = now or datetime.now(UTC)
        metadata = obj["metadata"]
        name, namespace = metadata["name"], metadata["namespace"]
        try:
            status = parse(RollbackDrillStatus, obj.get("status") or {}, prefix="status")
        except InvalidSpecError as unreadable:
            return await self._end_unreadable(obj, unreadable, now)
        if status.phase in FINISHED:
            return DrillPassResult(decision=DrillDecision(status, requeue_after=3600.0))
        try:
            spec = parse(RollbackDrillSpec, obj.get("spec") or {}, prefix="spec")
        except InvalidSpecError as invalid:
            return await self._end(obj, status, f"invalid drill: {invalid}", now)

        await self._label(obj, spec.model_deployment)
        md_obj = await self._model_deployment(namespace, spec.model_deployment)
        if md_obj is None:
            # Its Deployments and route went with it: there is no traffic to put back.
            return await self._end(
                obj, status, f"ModelDeployment {spec.model_deployment} not found", now
            )
        md_reading = read_status(md_obj.get("status"))
        try:
            md_spec = parse(ModelDeploymentSpec, md_obj.get("spec") or {}, prefix="spec")
            if not md_reading.sound:
                raise InvalidSpecError(md_reading.problems)
        except InvalidSpecError as invalid:
            if status.phase is DrillPhase.PENDING:
                return await self._end(
                    obj, status, f"ModelDeployment {spec.model_deployment}: {invalid}", now
                )
            # Mid-drill: without a valid spec there is no router to put traffic
            # back with, and without a readable status no known weights or
            # revisions; wait for the fix (the timeout still runs).
            log.warning("%s/%s: ModelDeployment unreadable mid-drill: %s", namespace, name, invalid)
            return DrillPassResult(
                decision=DrillDecision(status), model_deployment_uid=md_obj["metadata"]["uid"]
            )
        md_status = md_reading.status

        # A drill acts on every pass: it reads the API server, not the view.
        view = self.reconciler.view.direct if self.reconciler.view is not None else None
        router = self.reconciler.router_of(md_obj, md_spec, view=view)
        revisions, weights, others = await asyncio.gather(
            applier.observe_revisions(self.api, namespace, spec.model_deployment, view=view),
            _read_weights(router),
            # Which drill goes first is settled on the API server's list, not
            # the view: two drills created at once must both see each other.
            drills_of(self.api, namespace, spec.model_deployment),
        )
        observed = DrillObservations(
            revisions=revisions,
            router=weights,
            other_drill_running=blocking_drill(obj, others),
        )
        if analysis_due(spec, status, md_spec, now) and status.revisions is not None:
            target = status.revisions.last_known_good
            assert target is not None
            analysis = await self.reconciler.looks.observe(
                namespace,
                spec.model_deployment,
                md_spec,
                md_status,
                now,
                candidate_revision=target,
                stable_revision=status.revisions.stable,
                count_metrics=judges_counts(spec),
            )
            observed = DrillObservations(revisions, weights, analysis, observed.other_drill_running)

        decision = plan_drill(
            name,
            spec,
            status=status,
            md_spec=md_spec,
            md_status=md_status,
            observed=observed,
            now=now,
        )
        result = DrillPassResult(decision=decision, model_deployment_uid=md_obj["metadata"]["uid"])
        await carry_out_in_order(
            decision.actions,
            lambda action: acts.carry_out(self.api, md_obj, md_spec, router, action),
            result,
            who=f"{namespace}/{name}",
        )
        result.status_written = await self._write_status(obj, decision.status)
        return result

    async def _label(self, obj: Mapping[str, Any], md_name: str) -> None:
        """Make the drill findable by its model's label (a drill made by hand may lack it)."""
        wanted = model_label(md_name)
        if (obj["metadata"].get("labels") or {}).get(LABEL_MODEL) == wanted:
            return
        await self._resource(obj).patch({"metadata": {"labels": {LABEL_MODEL: wanted}}})

    async def _model_deployment(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            found = await ModelDeploymentResource.get(name, namespace=namespace, api=self.api)
        except kr8s.NotFoundError:
            return None
        return dict(found.raw)

    async def _end(
        self, obj: Mapping[str, Any], status: RollbackDrillStatus, reason: str, now: datetime
    ) -> DrillPassResult:
        """A drill that cannot run at all: refused before it began, failed after."""
        ended = status.deep_copy()
        ended.phase = (
            DrillPhase.REFUSED if status.phase is DrillPhase.PENDING else DrillPhase.FAILED
        )
        ended.reason = reason
        ended.finished_at = now
        await self._write_status(obj, ended)
        return DrillPassResult(decision=DrillDecision(ended, requeue_after=3600.0))

    async def _end_unreadable(
        self, obj: Mapping[str, Any], unreadable: InvalidSpecError, now: datetime
    ) -> DrillPassResult:
        """A drill whose own status the models refuse (edited by hand): it ends as Failed.

        Its step and the weights it found cannot be trusted, so it does not go
        on; only ``phase``, ``reason`` and ``finishedAt`` are written, and the
        rest stays as the person left it. The ModelDeployment's pass, which
        no longer sees a running drill, then puts 100% back on the stable
        revision, as it does for a drill deleted midway.
        """
        ended = RollbackDrillStatus(
            phase=DrillPhase.FAILED, reason=f"status unreadable: {unreadable}", finished_at=now
        )
        stored = dict(obj.get("status") or {})
        wanted = {
            **stored,
            **{key: ended.to_dict()[key] for key in ("phase", "reason", "finishedAt")},
        }
        await write_status(self._resource(obj), stored, wanted)
        return DrillPassResult(decision=DrillDecision(ended, requeue_after=3600.0))

    async def _write_status(self, obj: Mapping[str, Any], status: RollbackDrillStatus) -> bool:
        stored = obj.get("status") or {}
        return await write_status(self._resource(obj), stored, status.to_dict()) is not None

    def _resource(self, obj: Mapping[str, Any]) -> ObjectRef:
        metadata = obj["metadata"]
        return ObjectRef.of(
            RollbackDrillResource, self.api, metadata["namespace"], metadata["name"]
        )


async def _read_weights(router: Router) -> RouterObservation:
    # Only read: creating or repairing the route is the ModelDeployment pass's job.
    try:
        observation: RouterObservation = await router.get_weight()
    except API_OR_MISSING as error:
        return RouterObservation(weights=None, error=str(error))
    return observation


def blocking_drill(me: Mapping[str, Any], drills: list[dict[str, Any]]) -> str | None:
    """Another drill of the same ModelDeployment that goes first.

    A running one, or a pending one created earlier (name breaks a tie), so two
    drills created at once agree on which one runs and which is refused.
    """
    my_name = me["metadata"]["name"]
    my_key = (me["metadata"].get("creationTimestamp", ""), my_name)
    for drill in drills:
        metadata = drill["metadata"]
        if metadata["name"] == my_name:
            continue
        phase = (drill.get("status") or {}).get("phase", DrillPhase.PENDING.value)
        earlier = (metadata.get("creationTimestamp", ""), metadata["name"]) < my_key
        if phase == DrillPhase.RUNNING.value or (phase == DrillPhase.PENDING.value and earlier):
            return str(metadata["name"])
    return None
