"""The replicas router: no mesh, no gateway; weights become replica counts.

One shared Service (``traffic.replicas.service``, or the ModelDeployment's
name) selects the pods of every revision by ``modelcanary.io/model`` alone, so
each ready pod takes about the same share of the requests. To give the canary
``w`` percent, the router scales the canary's Deployment to about ``w`` percent
of ``spec.predictor.replicas`` and the stable one to the rest.

Granularity: with N replicas in total, weights move in steps of 100/N percent.
10% of 4 replicas rounds to one replica, which is 25%; a weight above 0 always
gives the canary at least one pod and a weight below 100 leaves stable at
least one, so a step is never silently skipped. With a single replica there is
nothing to split: the canary gets the pod only at 100%. The real split also
depends on the clients (kube-proxy balances connections, not requests, so
long-lived keep-alive connections skew it); use the Gateway API router where
a precise percentage matters.

The arithmetic (:func:`replica_split`, :func:`effective_weight`) lives in the
decision core's pure layer, because the core must know which percent to
expect when it reads the weights back; this module re-exports it and uses it,
so the router and the core can never disagree.

``get_weight`` reads the *ready* replicas of each revision, not the desired
ones: traffic reaches only ready pods, so the rollout confirms a weight only
once the pods that carry it can serve.

``ensure`` and ``get_weight`` read the shared Service and the Deployments
from the view (``view.watch.View``) when the pass has one, so a pass at rest
asks the API server nothing; the ready counts come from the Deployment
controller through the watch. ``set_weight`` reads the Deployments from the
API server, since it writes from what it reads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any

import kr8s
import kr8s.asyncio
from kr8s.asyncio.objects import Service

from modelcanary import rest
from modelcanary.rollout.granularity import effective_weight, replica_split
from modelcanary.rollout.observations import RouterObservation
from modelcanary.traffic.weights import check_weights, percentages
from modelcanary.view.store import SERVICE
from modelcanary.view.watch import View
from modelcanary.workloads.applier import apply_service, list_revisions, read, scale_revision
from modelcanary.workloads.builders import (
    LABEL_REVISION,
    LABEL_ROLE,
    OwnerRef,
    build_shared_service_spec,
    shared_service_name,
)

__all__ = [
    "ReplicasRouter",
    "effective_weight",
    "replica_split",
    "split_replicas",
]


def _apportion(total: int, weights: Mapping[str, int]) -> dict[str, int]:
    """Largest-remainder shares of ``total`` pods, at least one per revision while they last."""
    exact = {revision: total * weight / 100 for revision, weight in weights.items()}
    counts = {revision: int(share) for revision, share in exact.items()}
    by_remainder = sorted(exact, key=lambda r: (counts[r] - exact[r], r))
    for revision in by_remainder[: total - sum(counts.values())]:
        counts[revision] += 1
    for revision in sorted(counts, key=lambda r: (weights[r], r)):
        if counts[revision] == 0:
            donor = max(counts, key=lambda r: (counts[r], r))
            if counts[donor] <= 1:
                break
            counts[donor] -= 1
            counts[revision] = 1
    return counts


def split_replicas(
    total: int, weights: Mapping[str, int], canary: str | None = None
) -> dict[str, int]:
    """revision -> replicas for ``weights`` (percent, summing to 100) out of ``total`` pods.

    With two revisions taking traffic this is exactly :func:`replica_split` for the
    canary's weight, which is what the decision core expects to read back. The
    canary is ``canary`` when it is one of them, else the one with less weight.
    Revisions at 0% get no pods.
    """
    weights = check_weights(weights)
    if total < 1:
        raise ValueError("total replicas must be at least 1")
    counts = dict.fromkeys(weights, 0)
    serving = sorted(revision for revision, weight in weights.items() if weight > 0)
    if len(serving) == 1:
        counts[serving[0]] = total
    elif len(serving) == 2:
        if canary not in serving:
            canary = min(serving, key=lambda r: (weights[r], r))
        (stable,) = (revision for revision in serving if revision != canary)
        assert canary is not None
        counts[stable], counts[canary] = replica_split(total, weights[canary])
    else:
        counts.update(_apportion(total, {r: weights[r] for r in serving}))
    return counts


class ReplicasRouter:
    """Shifts traffic by scaling each revision's Deployment behind one shared Service."""

    def __init__(
        self,
        api: kr8s.asyncio.Api,
        *,
        namespace: str,
        md_name: str,
        service: str | None,
        port: int,
        owner: OwnerRef,
        total: int,
        view: View | None = None,
    ) -> None:
        self.view = view
        self.api = api
        self.namespace = namespace
        self.md_name = md_name
        self.service_name = shared_service_name(md_name, service)
        self.port = port
        self.owner = owner
        self.total = total

    def manifest(self) -> dict[str, Any]:
        return build_shared_service_spec(
            md_name=self.md_name,
            namespace=self.namespace,
            port=self.port,
            owner=self.owner,
            name=self.service_name,
        )

    def _is_ours(self, service: Mapping[str, Any]) -> bool:
        references = service.get("metadata", {}).get("ownerReferences") or []
        return any(ref.get("uid") == self.owner.uid for ref in references)

    async def ensure(self) -> None:
        """Create the shared Service if it is missing and keep ours right.

        A Service of that name that the ModelDeployment does not own is a user's,
        and is left exactly as it is.
        """
        if self._absent_as_far_as_known() and await self._created():
            return
        existing = await self._service()
        if existing is None or self._is_ours(existing):
            # A view's None is an answer (a direct read, or a synced watch): create
            # at once, and a 409 still reads and patches.
            await apply_service(
                self.api,
                self.manifest(),
                existing=existing,
                absent=existing is None and self.view is not None,
                view=self.view,
            )

    def _absent_as_far_as_known(self) -> bool:
        """The watches hold no Service of that name and no read found one outside them.

        The watches select the operator's own Services by label; a user's Service
        named in the spec is found only by a read, which the store then remembers.
        So for a new ModelDeployment the Service is created at once, without a GET
        first (one of the ten requests a new object cost, bench-scale N=1,000)."""
        view = self.view
        if view is None or view.is_direct:
            return False
        store = view.store
        return (
            store.synced(SERVICE)
            and not store.missing(SERVICE)
            and store.get(SERVICE, self.namespace, self.service_name) is None
            and not store.outside(SERVICE, self.namespace, self.service_name)
        )

    async def _created(self) -> bool:
        """Create the shared Service; False when the name is taken (it is read then)."""
        assert self.view is not None
        try:
            answer = await rest.create(Service, self.api, self.manifest())
        except kr8s.ServerError as error:
            if error.response is None or error.response.status_code != 409:
                raise
            return False
        self.view.remember(SERVICE, answer)
        return True

    async def _service(self) -> dict[str, Any] | None:
        if self.view is None:
            return await read(Service, self.api, self.namespace, self.service_name)
        found = await self.view.get(SERVICE, self.namespace, self.service_name)
        if found is None or not self._is_ours(found):
            # What no watch brings (a user's Service) is read on every pass.
            self.view.store.note_outside(
                SERVICE, self.namespace, self.service_name, there=found is not None
            )
        return found

    async def set_weight(self, weights: Mapping[str, int]) -> None:
        """Scale each revision to its share of the replicas (one patch per changed count).

        Revisions left out of ``weights`` are scaled to 0: with one shared
        Service, any ready pod takes traffic.
        """
        weights = check_weights(weights)
        await self.ensure()
        # The view the pass acts on holds the Deployments with the pass's own writes
        # in it (a new revision just created); another watch view may lag.
        acting = self.view if self.view is not None and self.view.acting else None
        deployments = {
            str(d["metadata"]["labels"][LABEL_REVISION]): d
            for d in await list_revisions(self.api, self.namespace, self.md_name, view=acting)
            if (d["metadata"].get("labels") or {}).get(LABEL_REVISION)
        }
        missing = sorted(r for r, w in weights.items() if w > 0 and r not in deployments)
        if missing:
            raise kr8s.NotFoundError(
                f"no Deployment for revision(s) {', '.join(missing)} of {self.md_name}"
            )
        canaries = [
            revision
            for revision, weight in weights.items()
            if weight > 0
            and deployments[revision]["metadata"]["labels"].get(LABEL_ROLE) == "canary"
        ]
        counts = split_replicas(self.total, weights, canaries[0] if len(canaries) == 1 else None)
        changes = [
            scale_revision(self.api, self.namespace, d["metadata"]["name"], counts.get(rev, 0))
            for rev, d in sorted(deployments.items())
            if (d.get("spec") or {}).get("replicas", 1) != counts.get(rev, 0)
        ]
        await asyncio.gather(*changes)

    async def get_weight(self) -> RouterObservation:
        """revision -> percent of the ready pods behind the shared Service."""
        service, deployments = await asyncio.gather(
            self._service(),
            list_revisions(self.api, self.namespace, self.md_name, view=self.view),
        )
        if service is None:
            return RouterObservation(
                weights=None, error=f"Service {self.namespace}/{self.service_name} not found"
            )
        selector: dict[str, str] = (service.get("spec") or {}).get("selector") or {}
        ready: dict[str, int] = {}
        for deployment in deployments:
            revision = (deployment["metadata"].get("labels") or {}).get(LABEL_REVISION)
            pod_labels = deployment["spec"]["template"]["metadata"].get("labels") or {}
            count = int((deployment.get("status") or {}).get("readyReplicas", 0))
            # Only pods the Service selects take its traffic (a user's Service may differ).
            selected = bool(selector) and selector.items() <= pod_labels.items()
            if revision and selected and count > 0:
                ready[str(revision)] = ready.get(str(revision), 0) + count
        return RouterObservation(weights=percentages(ready))

    async def finalize(self) -> None:
        """Nothing to give back: the shared Service and the Deployments are the
        ModelDeployment's own, and the garbage collector removes them with it."""
