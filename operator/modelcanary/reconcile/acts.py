"""One action of a decision, carried out against the API server.

The decision core says what to do (``rollout.decision``); this turns each
action into the builders' manifests and the edges' writes. It is shared by the
ModelDeployment's pass and the drill's, which act through the same router and
the same Deployment builders, so a drill rehearses exactly what a rollback does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection, Mapping
from typing import Any

import kr8s.asyncio

from modelcanary.api.modeldeployment import ModelDeploymentSpec
from modelcanary.passes import RollbackDrillResource
from modelcanary.rollout.decision import (
    Action,
    DeleteAutoscaler,
    DeleteDrill,
    DeleteRevision,
    EnsureRevision,
    ScaleRevision,
    SetWeights,
)
from modelcanary.traffic import Router
from modelcanary.view.watch import View
from modelcanary.workloads import applier
from modelcanary.workloads.builders import (
    build_autoscaler_spec,
    build_deployment_spec,
    build_service_spec,
    owner_of,
    revision_name,
)


async def carry_out(
    api: kr8s.asyncio.Api,
    obj: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    router: Router,
    action: Action,
    *,
    existing: Collection[str] | None = None,
    view: View | None = None,
    routed_whole: Collection[str] = (),
) -> None:
    """Carry out one action for the ModelDeployment ``obj``; ``existing``: the revisions
    whose Deployments the pass has just read (a new one is created without a GET);
    ``view``: the view the pass acts on, told what is written; ``routed_whole``:
    revisions that a later action of this pass gives 100% through the replicas router."""
    namespace, name = obj["metadata"]["namespace"], obj["metadata"]["name"]
    if isinstance(action, EnsureRevision):
        await _ensure_revision(
            api, obj, spec, action, existing=existing, view=view, routed_whole=routed_whole
        )
    elif isinstance(action, ScaleRevision):
        await applier.scale_revision(
            api, namespace, revision_name(name, action.revision), action.replicas
        )
    elif isinstance(action, DeleteAutoscaler):
        await applier.delete_autoscaler(api, namespace, revision_name(name, action.revision))
    elif isinstance(action, SetWeights):
        await router.set_weight(action.as_dict())
    elif isinstance(action, DeleteRevision):
        await applier.delete_revision(api, namespace, revision_name(name, action.revision))
    elif isinstance(action, DeleteDrill):
        drill = RollbackDrillResource(
            {"metadata": {"name": action.name, "namespace": namespace}}, api=api
        )
        with contextlib.suppress(kr8s.NotFoundError):
            await drill.delete()


async def _ensure_revision(
    api: kr8s.asyncio.Api,
    obj: Mapping[str, Any],
    spec: ModelDeploymentSpec,
    action: EnsureRevision,
    *,
    existing: Collection[str] | None,
    view: View | None,
    routed_whole: Collection[str],
) -> None:
    replicas = action.replicas if action.replicas is not None else 0
    if action.replicas is None and action.revision in routed_whole:
        # The router would scale it to all of them a moment later: a new
        # Deployment starts there (one PATCH less for every new object), and
        # one that exists is left to the router as before.
        replicas = spec.predictor.replicas
    common: dict[str, Any] = {
        "md_name": obj["metadata"]["name"],
        "namespace": obj["metadata"]["namespace"],
        "revision": action.revision,
        "predictor": action.predictor,
        "role": action.role,
        "owner": owner_of(obj),
    }
    port = spec.traffic.port
    deployment = build_deployment_spec(replicas=replicas, port=port, **common)
    service = build_service_spec(port=port, **common)
    autoscaler = (
        build_autoscaler_spec(min_replicas=action.autoscaler_min_replicas, **common)
        if action.autoscaler_min_replicas is not None
        else None
    )
    await applier.apply_revision(
        api,
        deployment,
        service,
        manage_replicas=action.replicas is not None,
        manifest_autoscaler=autoscaler,
        new=existing is not None and action.revision not in existing,
        view=view,
    )
