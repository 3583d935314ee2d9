"""The test data plane: real nginx in front of real model servers (DESIGN.md section 4).

:class:`NginxGateway` splits traffic by upstream weights, :class:`HTTPRouteSync`
renders a Gateway API HTTPRoute's backend weights into those upstream weights
(the job a Gateway controller does in a cluster), and :class:`LoadGenerator`
keeps traffic flowing so that each revision's metrics come from real requests.
"""

from e2e.dataplane.gateway import (
    AppliedConfig,
    GatewayError,
    HTTPRoute,
    HTTPRouteSync,
    NginxGateway,
    Resolver,
    RouteSyncEvent,
    ServiceRegistry,
    find_nginx,
)
from e2e.dataplane.loadgen import Counts, LoadGenerator, burst

__all__ = [
    "AppliedConfig",
    "Counts",
    "GatewayError",
    "HTTPRoute",
    "HTTPRouteSync",
    "LoadGenerator",
    "NginxGateway",
    "Resolver",
    "RouteSyncEvent",
    "ServiceRegistry",
    "burst",
    "find_nginx",
]
