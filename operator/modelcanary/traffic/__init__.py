"""Routers: how traffic is shifted between a model's revisions, behind one small protocol.

Flagger's shape: a router does four things and each implementation lives in a
module of its own (``gatewayapi``, ``replicas``), with its own tests. The
rollout never advances on what it *asked* a router to do, only on what the
router *reads back* (``get_weight``), so a router that silently failed, lags,
or was edited by a person shows up as a difference and is repaired or waited
for, never assumed.

Routers are built per pass with :func:`router_for`; they hold no state of their
own between calls, so a restarted operator needs nothing but the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import kr8s.asyncio

from modelcanary.api.modeldeployment import (
    Traffic,
)
from modelcanary.rollout.observations import RouterObservation
from modelcanary.traffic.gatewayapi import HTTPRouteRouter
from modelcanary.traffic.replicas import ReplicasRouter
from modelcanary.view.watch import View
from modelcanary.workloads.builders import OwnerRef

__all__ = ["HTTPRouteRouter", "ReplicasRouter", "Router", "router_for"]


class Router(Protocol):
    """Shifts traffic between the revisions of one ModelDeployment."""

    async def ensure(self) -> None:
        """Create what the router needs (route, Service) if asked to; never clobber a user's."""

    async def set_weight(self, weights: Mapping[str, int]) -> None:
        """Route by ``weights`` (revision -> percent, summing to 100); revisions left out
        get nothing. Raises ValueError for weights that do not sum to 100."""

    async def get_weight(self) -> RouterObservation:
        """What is really configured now, as revision -> percent (VerifyWeight)."""

    async def finalize(self) -> None:
        """On ModelDeployment deletion: give back what was there before the operator."""


def router_for(
    api: kr8s.asyncio.Api,
    *,
    namespace: str,
    md_name: str,
    traffic: Traffic,
    owner: OwnerRef,
    replicas_total: int,
    view: View | None = None,
) -> Router:
    """The router a ModelDeployment's ``spec.traffic`` asks for.

    ``replicas_total`` is ``spec.predictor.replicas``: the pods the replicas
    router shares out between revisions (a Gateway API route ignores it).
    ``view``: where the router reads what it observes (None: the API server).
    """
    if traffic.gateway_api is not None:
        return HTTPRouteRouter(
            api,
            namespace=namespace,
            md_name=md_name,
            config=traffic.gateway_api,
            port=traffic.port,
            owner=owner,
            view=view,
        )
    if traffic.replicas is not None:
        return ReplicasRouter(
            api,
            namespace=namespace,
            md_name=md_name,
            service=traffic.replicas.service,
            port=traffic.port,
            owner=owner,
            total=replicas_total,
            view=view,
        )
    raise ValueError("spec.traffic sets no router: set gatewayAPI or replicas")
