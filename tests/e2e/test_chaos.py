"""The short chaos run of ``make test``: a few canaries, good and bad, while the
operator is SIGKILLed, Prometheus stopped and kube-apiserver restarted at seeded
random moments (``e2e/chaos.py``; ``make bench-chaos`` runs 20 and more).

It runs on a control plane of its own, as bench-chaos does. On the session's
shared plane, the namespaces earlier tests left terminating kept
kube-controller-manager busy through every restart, and twice in CI (same
seed, same moment) a candidate's Deployment got its pod minutes late, so its
canary could not start in the 300 s it is given: the earlier tests' leftovers,
not the operator, decided the outcome.

Later, in CI (and, by its message, in a run before that), a candidate stayed
"waiting to become Available" for all its 300 s: restarts of kube-apiserver
kept kwok's nodes from renewing their leases past the grace period,
kube-controller-manager marked every pod NotReady ("all Nodes are not-Ready"),
and kwok, unlike a kubelet, never reported them
Ready again. The harness now does (``e2e/harness/kwok_stages``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import kr8s
import pytest
from kr8s.objects import Namespace

from e2e.chaos import faults_for, run_chaos
from e2e.dataplane.scenario import CanaryScenario
from e2e.harness import ControlPlane, PrometheusServer
from e2e.harness.binaries import Toolchain
from tests.chart import audited_full_tier

pytestmark = pytest.mark.e2e


@pytest.fixture
def own_plane(toolchain: Toolchain, tmp_path: Path) -> Iterator[ControlPlane]:
    """A full tier of its own: the chaos restarts its kube-apiserver."""
    with audited_full_tier(toolchain, tmp_path / "plane", audit=False) as plane:
        yield plane


@pytest.fixture
def own_prometheus(tmp_path: Path) -> Iterator[PrometheusServer]:
    """Its own, since the chaos stops it."""
    server = PrometheusServer(tmp_path / "prometheus").start()
    try:
        yield server
    finally:
        server.stop()


@pytest.mark.timeout(900)
def test_canaries_end_right_and_history_stays_whole_under_chaos(
    own_plane: ControlPlane, own_prometheus: PrometheusServer, tmp_path: Path
) -> None:
    k8s = kr8s.api(kubeconfig=str(own_plane.kubeconfig))
    namespace = "chaos"
    Namespace({"metadata": {"name": namespace}}, api=k8s).create()
    with CanaryScenario(
        own_plane,
        k8s,
        namespace,
        own_prometheus,
        tmp_path / "world",
        faults_for=faults_for,
    ) as world:
        report = run_chaos(
            world,
            own_plane,
            canaries=4,
            seed=7,
            log_path=tmp_path / "chaos.jsonl",
            gap=(3.0, 8.0),
        )
    assert report.good >= 1
    assert report.bad >= 1
    assert sum(report.faults.values()) >= 3, report.faults
    assert report.wrong_final_states == []
    assert report.lost_entries == []
    assert report.duplicated_entries == []
    # A failed API call is a short retry, never a failed daemon (kopf waits 60 s then).
    assert "failed with an exception" not in world.operator.log_text()
