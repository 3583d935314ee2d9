"""One reconcile pass: observe, decide, act, write status once.

This is the glue between the pure core and the I/O edges, kept apart from
``handlers`` so that kopf stays in one small module and a pass can be driven
directly (tests, benchmarks) with nothing but a kr8s API object.

The order matters and is the same every time:

1. parse the spec with the models; a spec they refuse gets ``InvalidSpec`` and
   nothing else happens (traffic is never touched on a bad spec);
2. observe: the revisions' Deployments (one LIST), the router's weights, the
   pending manual action and, when due, Prometheus;
3. ``decide``;
4. carry out the actions in order; the first failure stops the rest, since
   later actions may depend on it (the next pass re-observes and retries);
5. write the status once, and only when it changed.

Steps 4 and 5, and clearing a handled manual action, are the skeleton this
pass shares with the drill's (``passes``). A status the models refuse is
read by ``rollout.status_reading`` before step 1: what can be salvaged is
used, and when that is not sound the pass changes nothing and says why.
The router and Prometheus come from factories given to the ``Reconciler``,
so the skeleton is tested over a fake API without a router or Prometheus.

With a ``view`` (the operator always has one), step 2 reads the watches'
in-memory view instead of the API server, so a pass with nothing to do asks
the API server nothing. When the view's decision would act or write, steps 2
and 3 run again on the API server's answers (Prometheus is not asked twice):
watches of different kinds are not ordered with each other, and what a pass
does must not rest on one that is behind another (``rollout.acting`` says when
a pass may act on the view all the same: a look that only records what it
saw, and every pass before the first revision serves). The
object itself comes from the caller (kopf's body, kept current by kopf's own
watch). The operator's own status writes must be seen by the next pass even
if kopf's watch has not delivered them yet, or that pass would decide again
from the status before: the API server's answer to each write is kept, and a
pass uses it while it is newer than the object it was given.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, Protocol

import kr8s.asyncio

from modelcanary import telemetry
from modelcanary.analysis.samples import AnalysisObservation
from modelcanary.api.modeldeployment import (
    ModelDeploymentSpec,
    ModelDeploymentStatus,
    Traffic,
)
from modelcanary.api.validation import InvalidSpecError, parse
from modelcanary.apierrors import API_OR_MISSING
from modelcanary.metrics.connection import provider_for
from modelcanary.passes import (
    ModelDeploymentResource,
    PassState,
    carry_out_in_order,
    clear_action,
    merge_patch,
    write_status,
)
from modelcanary.reconcile import acts
from modelcanary.reconcile.looks import Looks, ProviderFactory
from modelcanary.rest import ObjectRef
from modelcanary.rollout.acting import before_first_serving, routed_whole, routine_look
from modelcanary.rollout.actions import ANNOTATION, ANNOTATION_ID, parse_action
from modelcanary.rollout.analysis import analysis_due, look_instant, look_lateness
from modelcanary.rollout.decide import decide, decide_invalid
from modelcanary.rollout.decision import (
    Decision,
)
from modelcanary.rollout.observations import (
    Observations,
    RouterObservation,
)
from modelcanary.rollout.status_reading import decide_unsound, keep_memory, read_status
from modelcanary.rollout.status_reading import note as note_status
from modelcanary.traffic import Router, router_for
from modelcanary.view.drills import observe_drills
from modelcanary.view.store import OwnWrites
from modelcanary.view.watch import View
from modelcanary.workloads import applier
from modelcanary.workloads.builders import OwnerRef, owner_of

log = logging.getLogger(__name__)


class RouterFactory(Protocol):
    """Makes the router for a ModelDeployment's ``spec.traffic`` (``traffic.router_for``)."""

    def __call__(
        self,
        api: kr8s.asyncio.Api,
        *,
        namespace: str,
        md_name: str,
        traffic: Traffic,
        owner: OwnerRef,
        replicas_total: int,
        view: View | None = None,
    ) -> Router: ...


@dataclass
class PassResult(PassState):
    decision: Decision = field(kw_only=True)
    rollback_seconds: float | None = None


class Reconciler:
    """Runs passes for any number of ModelDeployments with one API client."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        routers: RouterFactory = router_for,
        prometheus: ProviderFactory = provider_for,
        view: View | None = None,
    ) -> None:
        self.api = api
        self.view = view
        """Where passes read what they observe; None: the API server, every time."""
        self._routers = routers
        self.looks = Looks(api, prometheus)
        self.own_writes = OwnWrites()

    def freshest(self, obj: Mapping[str, Any]) -> Mapping[str, Any]:
        return self.own_writes.freshest(obj)

    def forget(self, uid: str) -> None:
        """The ModelDeployment is gone (or no longer ours): drop what was kept for it."""
        self.own_writes.forget(uid)

    async def run_pass(self, obj: Mapping[str, Any], *, now: datetime | None = None) -> PassResult:
        now = now or datetime.now(UTC)
        obj = self.freshest(obj)
        metadata = obj["metadata"]
        generation = metadata.get("generation")
        reading = read_status(obj.get("status"))
        if not reading.sound:
            result = PassResult(decision=decide_unsound(reading, now, generation))
            result.status_written = await self._write_raw_status(
                obj, keep_memory(obj.get("status") or {}, result.decision.status)
            )
            return result
        status, noted = note_status(reading, now, generation)
        try:
            spec = parse(ModelDeploymentSpec, obj.get("spec") or {}, prefix="spec")
        except InvalidSpecError as invalid:
            decision = decide_invalid(status, invalid.errors, now, generation=generation)
            result = PassResult(decision=replace(decision, events=noted + decision.events))
            result.status_written = await self._write_status(obj, status, decision.status)
            return result

        # The pass's own view: what it writes while it observes (the router's
        # shared Service, when missing) its direct view need not read again.
        view = self.view.for_pass() if self.view is not None else None
        router = self.router_of(obj, spec, view=view)
        observed = await self._observe(obj, spec, status, router, now, view=view)
        decision = decide(spec, status, observed, now, generation=generation)
        acting: View | None = None  # what the pass acts on, once it would act
        if (
            view is not None
            and _changes(obj, status, decision)
            and not routine_look(status, decision)
        ):
            acting = view.acting_view() if before_first_serving(status) else view.direct
            router = self.router_of(obj, spec, view=acting)
            if acting.is_direct:
                # The view said there is something to do. Watches of different kinds
                # are not ordered with each other (a drill's Running and the
                # Deployment it then made may arrive either way round), so what is
                # done is decided on the API server's answers, read now (each
                # object once for the pass).
                observed = await self._observe(
                    obj, spec, status, router, now, view=acting, analysis=observed.analysis
                )
                decision = decide(spec, status, observed, now, generation=generation)
        decision = replace(decision, events=noted + decision.events)
        result = PassResult(decision=decision)
        started = time.monotonic()
        whole = routed_whole(spec, decision.actions)
        await carry_out_in_order(
            decision.actions,
            lambda action: acts.carry_out(
                self.api,
                obj,
                spec,
                router,
                action,
                existing=observed.revisions,
                view=acting,
                routed_whole=whole,
            ),
            result,
            who=f"{metadata['namespace']}/{metadata['name']}",
        )
        if any(e.reason == "RolledBack" for e in decision.events) and result.failed is None:
            result.rollback_seconds = time.monotonic() - started
        # The status says what was decided; if an action failed, the next pass
        # observes the world as it is and decides again, so nothing is lost.
        result.status_written = await self._write_status(obj, status, decision.status)
        handled = decision.status.last_action
        if observed.action is not None and handled is not None and handled.id == observed.action.id:
            answer = await clear_action(self._resource(obj), metadata.get("annotations") or {})
            if answer is not None:
                self.own_writes.keep(answer)
        return result

    def router_of(
        self, obj: Mapping[str, Any], spec: ModelDeploymentSpec, *, view: View | None = None
    ) -> Router:
        """The router for ``spec.traffic``, reading through ``view`` (default: the pass's)."""
        metadata = obj["metadata"]
        return self._routers(
            self.api,
            namespace=metadata["namespace"],
            md_name=metadata["name"],
            traffic=spec.traffic,
            owner=owner_of(obj),
            replicas_total=spec.predictor.replicas,
            view=view if view is not None else self.view,
        )

    # -- observing -----------------------------------------------------------------

    async def _observe(
        self,
        obj: Mapping[str, Any],
        spec: ModelDeploymentSpec,
        status: ModelDeploymentStatus,
        router: Router,
        now: datetime,
        *,
        view: View | None,
        analysis: AnalysisObservation | None = None,
    ) -> Observations:
        """What the pass decides on; ``analysis`` already queried, if it was due."""
        namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
        annotations = obj["metadata"].get("annotations") or {}
        revisions, weights, (drill, finished) = await asyncio.gather(
            applier.observe_revisions(self.api, namespace, name, view=view),
            self._read_router(router),
            observe_drills(self.api, namespace, name, view=view),
        )
        if analysis is None and analysis_due(spec, status, now):
            assert status.canary_revision is not None
            late = look_lateness(spec, status, now)
            if late is not None:
                telemetry.ANALYSIS_TICK_LAG.observe(max(0.0, late))
            analysis = await self.looks.observe(
                namespace,
                name,
                spec,
                status,
                now,
                candidate_revision=status.canary_revision,
                stable_revision=status.stable_revision,
                at=look_instant(spec, status, now),
            )
        return Observations(
            revisions=revisions,
            router=weights,
            analysis=analysis,
            action=parse_action(annotations.get(ANNOTATION), annotations.get(ANNOTATION_ID)),
            drill=drill,
            finished_drills=finished,
        )

    async def _read_router(self, router: Router) -> RouterObservation:
        try:
            await router.ensure()
            return await router.get_weight()
        except API_OR_MISSING as error:
            return RouterObservation(weights=None, error=str(error))

    # -- acting --------------------------------------------------------------------

    # -- writing -------------------------------------------------------------------

    async def _write_status(
        self,
        obj: Mapping[str, Any],
        before: ModelDeploymentStatus,
        after: ModelDeploymentStatus,
    ) -> bool:
        if after == before and after.to_dict() == (obj.get("status") or {}):
            return False
        return await self._write_raw_status(obj, after.to_dict())

    async def _write_raw_status(self, obj: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
        answer = await write_status(self._resource(obj), obj.get("status") or {}, wanted)
        if answer is not None:
            self.own_writes.keep(answer)
        return answer is not None

    def _resource(self, obj: Mapping[str, Any]) -> ObjectRef:
        metadata = obj["metadata"]
        return ObjectRef.of(
            ModelDeploymentResource, self.api, metadata["namespace"], metadata["name"]
        )


def _changes(obj: Mapping[str, Any], status: ModelDeploymentStatus, decision: Decision) -> bool:
    """Whether the pass would act or write its status (the write's own test)."""
    if decision.actions:
        return True
    if decision.status == status and decision.status.to_dict() == (obj.get("status") or {}):
        return False
    return bool(merge_patch(obj.get("status") or {}, decision.status.to_dict()))
