"""The router block of a ModelDeployment: how traffic is split between revisions.

Exactly one router is named: Gateway API (an HTTPRoute's backend weights) or
replicas (weights approximated by replica counts behind one Service).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from modelcanary.api.base import (
    DNS_LABEL_PATTERN,
    ApiModel,
    cel,
    validations,
)


class ParentReference(ApiModel):
    """A Gateway API parentRef: the Gateway (and listener) the HTTPRoute attaches to."""

    group: Annotated[str, Field(max_length=253)] | None = None
    """API group of the parent; gateway.networking.k8s.io when unset."""

    kind: Annotated[str, Field(max_length=63)] | None = None
    """Kind of the parent; Gateway when unset."""

    namespace: Annotated[str, Field(max_length=63, pattern=DNS_LABEL_PATTERN)] | None = None
    """Namespace of the parent; the route's namespace when unset."""

    name: Annotated[str, Field(min_length=1, max_length=253)]
    """Name of the parent."""

    section_name: Annotated[str, Field(max_length=253)] | None = None
    """A listener of the parent, by name."""

    port: Annotated[int, Field(ge=1, le=65535)] | None = None
    """A listener of the parent, by port."""


class GatewayAPIRouter(ApiModel):
    """Shift traffic by the backend weights of a Gateway API HTTPRoute (v1)."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "!self.create || (has(self.parentRefs) && size(self.parentRefs) > 0)",
                "parentRefs are required when create is true",
                ".parentRefs",
            )
        )
    )

    http_route: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_LABEL_PATTERN)]
    """Name of the HTTPRoute in the ModelDeployment's namespace."""

    create: bool = False
    """Create the HTTPRoute if it does not exist. When false, the route must exist and
    the operator manages only the backendRefs of its first rule, restoring them on deletion."""

    parent_refs: Annotated[list[ParentReference], Field(max_length=32)] | None = None
    """The Gateways the route attaches to; used only when the operator creates the route."""

    @model_validator(mode="after")
    def _parents_to_create_with(self) -> GatewayAPIRouter:
        if self.create and not self.parent_refs:
            raise ValueError("parentRefs are required when create is true")
        return self


class ReplicasRouter(ApiModel):
    """Approximate weights with replica counts behind one Service; no mesh needed.

    With N replicas in total, weights move in steps of 100/N percent, and the real
    split also depends on the clients' connection reuse. Use it where no Gateway runs.
    """

    service: (
        Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL_PATTERN)] | None
    ) = None
    """The Service that selects every revision's pods; the ModelDeployment's name when unset."""


class Traffic(ApiModel):
    """How traffic reaches the model, and which router shifts it between revisions."""

    model_config = ConfigDict(
        json_schema_extra=validations(
            cel(
                "[has(self.gatewayAPI), has(self.replicas)].filter(x, x).size() == 1",
                "exactly one router must be set: gatewayAPI or replicas",
            )
        )
    )

    port: Annotated[int, Field(ge=1, le=65535)] = 8080
    """The model server's HTTP port (also the port of each revision's Service)."""

    gateway_api: Annotated[GatewayAPIRouter | None, Field(alias="gatewayAPI")] = None
    """Route with a Gateway API HTTPRoute."""

    replicas: ReplicasRouter | None = None
    """Route by replica counts behind one Service."""

    def router_kind(self) -> Literal["gatewayAPI", "replicas"]:
        if self.gateway_api is not None:
            return "gatewayAPI"
        return "replicas"

    @model_validator(mode="after")
    def _exactly_one_router(self) -> Traffic:
        if (self.gateway_api is None) == (self.replicas is None):
            raise ValueError("exactly one router must be set: gatewayAPI or replicas")
        return self
