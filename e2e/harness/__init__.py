"""The test harness: real control-plane processes for tests, the demo and `make cluster-up`.

Tiers (see ../shared/DESIGN.md section 4):

* fast: etcd + kube-apiserver, enough for CRDs, admission and handler tests;
* full: adds kube-controller-manager, kube-scheduler and kwok with fake Nodes,
  so Deployments really roll out and become Available.

Prometheus runs beside either tier and scrapes targets registered at run time.
"""

from e2e.harness.binaries import Toolchain, find_toolchain
from e2e.harness.kubernetes import ControlPlane, Tier
from e2e.harness.processes import ManagedProcess, StartupError, free_port
from e2e.harness.prometheus import PrometheusServer, ScrapeTarget

__all__ = [
    "ControlPlane",
    "ManagedProcess",
    "PrometheusServer",
    "ScrapeTarget",
    "StartupError",
    "Tier",
    "Toolchain",
    "find_toolchain",
    "free_port",
]
