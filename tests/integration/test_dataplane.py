"""Real nginx splits real traffic by the weights of a real HTTPRoute.

The operator's only lever is the HTTPRoute's backend weights, so the data plane
has to turn those weights into traffic faithfully: the right share of requests
to each revision, a weight of 0 meaning none at all, and a change reaching
nginx promptly and without dropping requests in flight.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest

from e2e.dataplane import (
    HTTPRoute,
    HTTPRouteSync,
    LoadGenerator,
    NginxGateway,
    ServiceRegistry,
    burst,
)
from e2e.dataplane.gateway import GENERATION_HEADER
from e2e.harness.kubernetes import ControlPlane, processes_mentioning, wait_for
from e2e.modelserver import ModelServerProcess

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def backends(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ModelServerProcess, ModelServerProcess]]:
    """Two revisions, shared by the module: each test only reads from them."""
    workdir = tmp_path_factory.mktemp("model-servers")
    with (
        ModelServerProcess(workdir, revision="rev-a", version="1") as a,
        ModelServerProcess(workdir, revision="rev-b", version="2") as b,
    ):
        yield a, b


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[NginxGateway]:
    with NginxGateway(tmp_path / "nginx") as started:
        yield started


def _get(url_port: int, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", url_port, timeout=10)
    try:
        connection.request("POST" if path == "/predict" else "GET", path)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def _alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie waiting for a reaper does not count."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


# ----------------------------------------------------------------------------- nginx


def test_a_gateway_without_backends_answers_503(gateway: NginxGateway) -> None:
    status, headers, _ = _get(gateway.port, "/predict")
    assert status == 503
    assert headers[GENERATION_HEADER] == "1"
    assert gateway.served_generation() == 1

    # All weights 0 is no backend either, under a new generation.
    gateway.set_backends({"127.0.0.1:1": 0, "127.0.0.1:2": 0})
    status, headers, _ = _get(gateway.port, "/predict")
    assert (status, headers[GENERATION_HEADER]) == (503, "2")
    assert burst(gateway.url, 20) == {(None, 503): 20}


def test_gateway_splits_traffic_by_weight(
    gateway: NginxGateway, backends: tuple[ModelServerProcess, ModelServerProcess]
) -> None:
    a, b = backends
    gateway.set_backends({a.address: 80, b.address: 20})
    counts = burst(gateway.url, 500)
    assert set(counts) == {("rev-a", 200), ("rev-b", 200)}
    assert 0.75 <= counts[("rev-a", 200)] / 500 <= 0.85

    # A weight of 0 means no traffic at all, not a little.
    gateway.set_backends({a.address: 100, b.address: 0})
    assert burst(gateway.url, 200) == {("rev-a", 200): 200}
    gateway.set_backends({a.address: 0, b.address: 100})
    assert burst(gateway.url, 200) == {("rev-b", 200): 200}
    gateway.set_backends({})
    assert burst(gateway.url, 50) == {(None, 503): 50}


def test_every_applied_configuration_is_recorded_with_its_timing(
    gateway: NginxGateway, backends: tuple[ModelServerProcess, ModelServerProcess]
) -> None:
    a, b = backends
    before = time.monotonic()
    applied = gateway.set_backends({a.address: 30, b.address: 70})
    assert applied.generation == 2 == gateway.generation
    assert applied.backends == {a.address: 30, b.address: 70} == gateway.backends()
    assert before <= applied.requested_at <= applied.applied_at <= applied.drained_at
    assert applied.applied_at <= time.monotonic()
    # Confirmed means served: nginx answers with the new generation right away.
    assert gateway.served_generation() == 2
    assert [config.generation for config in gateway.history()] == [1, 2]
    assert "server 127.0.0.1:1 " not in gateway.conf_path.read_text()
    assert f"server {a.address} weight=30" in gateway.conf_path.read_text()


def test_bad_backends_are_refused_before_nginx_sees_them(gateway: NginxGateway) -> None:
    for bad in ({"127.0.0.1:80; evil": 1}, {"no-port": 1}, {"127.0.0.1:80": -1}):
        with pytest.raises(ValueError, match=r"backend must be|weight of"):
            gateway.set_backends(bad)
    assert gateway.generation == 1
    assert gateway.served_generation() == 1


def test_reloads_under_steady_load_lose_no_request(
    gateway: NginxGateway, backends: tuple[ModelServerProcess, ModelServerProcess]
) -> None:
    a, b = backends
    gateway.set_backends({a.address: 50, b.address: 50})
    with LoadGenerator(gateway.url, 100) as load:
        for weights in ((90, 10), (10, 90), (0, 100), (100, 0)):
            target = load.total() + 30
            gateway.set_backends({a.address: weights[0], b.address: weights[1]})
            wait_for(lambda n=target: load.total() >= n, timeout=30, what="30 more responses")
        # After the last reload every new request goes to rev-a only.
        load.reset()
        wait_for(lambda: load.total() >= 100, timeout=30, what="100 responses after 100/0")
    counts = load.counts()
    assert load.transport_errors() == 0, load.last_error
    assert set(counts) == {("rev-a", 200)}
    # Old workers drained within the reload: none of them is left behind.
    assert len(gateway.worker_pids()) == gateway.workers


def test_the_load_generator_paces_its_requests(
    gateway: NginxGateway, backends: tuple[ModelServerProcess, ModelServerProcess]
) -> None:
    a, _ = backends
    gateway.set_backends({a.address: 1})
    with LoadGenerator(gateway.url, 50) as load:
        started = time.monotonic()
        wait_for(lambda: load.total() >= 100, timeout=30, interval=0.05, what="100 responses")
        slow = time.monotonic() - started
        load.set_rate(400)
        load.reset()
        started = time.monotonic()
        wait_for(lambda: load.total() >= 200, timeout=30, interval=0.05, what="200 responses")
        fast = time.monotonic() - started
    # 100 at 50/s take about 2 s; 200 at 400/s about 0.5 s (slower on a busy machine).
    assert 1.6 <= slow <= 6.0
    assert fast < slow
    assert load.first_seen("rev-a") is not None
    assert load.first_seen("rev-b") is None


def test_the_load_generator_times_each_revisions_first_failures(
    gateway: NginxGateway, backends: tuple[ModelServerProcess, ModelServerProcess], tmp_path: Path
) -> None:
    healthy, _ = backends
    with ModelServerProcess(tmp_path, revision="rev-bad", version="3", error_rate=1.0) as bad:
        gateway.set_backends({healthy.address: 1, bad.address: 1})
        with LoadGenerator(gateway.url, 100) as load:
            wait_for(
                lambda: load.failure_at("rev-bad", 3) is not None,
                timeout=30,
                interval=0.05,
                what="three failures from rev-bad",
            )
    first, third = load.failure_at("rev-bad", 1), load.failure_at("rev-bad", 3)
    assert first is not None
    assert third is not None
    assert load.first_seen("rev-bad") == first  # every answer of rev-bad fails
    assert first < third
    assert load.failure_at("rev-a", 1) is None
    with pytest.raises(ValueError, match="n must be"):
        load.failure_at("rev-bad", 0)
    load.reset()
    assert load.failure_at("rev-bad", 1) is None


def test_stopping_the_gateway_leaves_no_nginx_process(tmp_path: Path) -> None:
    gateway = NginxGateway(tmp_path / "nginx").start()
    master, workers = gateway.pid, gateway.worker_pids()
    assert workers
    assert all(_alive(pid) for pid in (master, *workers))
    assert processes_mentioning(str(gateway.workdir))
    gateway.stop()
    assert not gateway.is_running()
    assert wait_for(
        lambda: not any(_alive(pid) for pid in (master, *workers)),
        timeout=10,
        what="nginx master and workers to exit",
    )
    assert processes_mentioning(str(gateway.workdir)) == []
    with pytest.raises(ConnectionRefusedError):
        _get(gateway.port, "/__generation")


# ----------------------------------------------------------------------------- HTTPRoute


def _route(namespace: str, refs: list[dict[str, Any]], k8s: kr8s.Api) -> Any:
    return HTTPRoute(
        {
            "metadata": {"name": "model", "namespace": namespace},
            "spec": {"parentRefs": [{"name": "gateway"}], "rules": [{"backendRefs": refs}]},
        },
        api=k8s,
    )


def _weights_patch(refs: list[dict[str, Any]]) -> dict[str, Any]:
    return {"spec": {"rules": [{"backendRefs": refs}]}}


def test_httproute_sync_follows_the_routes_weights(
    control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    gateway: NginxGateway,
    backends: tuple[ModelServerProcess, ModelServerProcess],
) -> None:
    control_plane.install_gateway_api()
    a, b = backends
    registry = ServiceRegistry()
    registry.register("svc-a", a.address, port=8080)
    registry.register("svc-b", b.address, port=8080)
    route = _route(
        namespace,
        [
            {"name": "svc-a", "port": 8080, "weight": 90},
            {"name": "svc-b", "port": 8080, "weight": 10},
        ],
        k8s,
    )
    route.create()
    with HTTPRouteSync(k8s, namespace, "model", gateway, registry) as sync:
        first = sync.wait_until_applied({"svc-a": 90, "svc-b": 10}, timeout=60)
        assert first.config is not None
        assert gateway.backends() == {a.address: 90, b.address: 10}
        counts = burst(gateway.url, 300)
        assert 0.85 <= counts[("rev-a", 200)] / 300 <= 0.95
        assert counts[("rev-a", 200)] + counts[("rev-b", 200)] == 300

        patched_at = time.monotonic()
        route.patch(
            _weights_patch(
                [
                    {"name": "svc-a", "port": 8080, "weight": 0},
                    {"name": "svc-b", "port": 8080, "weight": 100},
                ]
            )
        )
        event = sync.wait_until_applied({"svc-a": 0, "svc-b": 100}, timeout=60)
        # A sanity bound only: real timing goals belong in bench/.
        assert 0 < event.applied_at - patched_at < 10
        assert event.resource_version != first.resource_version
        assert gateway.backends() == {a.address: 0, b.address: 100}
        assert burst(gateway.url, 100) == {("rev-b", 200): 100}

        # A route that is gone routes nowhere.
        route.delete()
        gone = sync.wait_until_applied({}, timeout=60)
        assert gone.resource_version is None
        assert burst(gateway.url, 20) == {(None, 503): 20}
    assert not sync.is_alive()
    assert sync.last_error is None


def test_httproute_sync_routes_to_a_service_once_it_is_registered(
    control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    gateway: NginxGateway,
    backends: tuple[ModelServerProcess, ModelServerProcess],
) -> None:
    control_plane.install_gateway_api()
    a, b = backends
    registry = ServiceRegistry()
    registry.register("svc-a", a.address)  # any port
    # No weight on svc-a: the Gateway API default of 1 applies.
    _route(
        namespace, [{"name": "svc-a", "port": 80}, {"name": "new", "port": 80, "weight": 3}], k8s
    ).create()
    with HTTPRouteSync(k8s, namespace, "model", gateway, registry) as sync:
        partial = sync.wait_until_applied({"svc-a": 1}, timeout=60)
        assert partial.unresolved == ("new",)
        assert burst(gateway.url, 50) == {("rev-a", 200): 50}

        registry.register("new", b.address, port=80)
        complete = sync.wait_until_applied({"svc-a": 1, "new": 3}, timeout=60)
        assert complete.unresolved == ()
        counts = burst(gateway.url, 400)
        assert 0.20 <= counts[("rev-a", 200)] / 400 <= 0.30


def test_sync_once_reloads_nginx_only_when_the_route_changes(
    control_plane: ControlPlane,
    k8s: kr8s.Api,
    namespace: str,
    gateway: NginxGateway,
    backends: tuple[ModelServerProcess, ModelServerProcess],
) -> None:
    control_plane.install_gateway_api()
    a, _ = backends
    registry = ServiceRegistry()
    registry.register("svc-a", a.address)
    route = _route(namespace, [{"name": "svc-a", "port": 80, "weight": 5}], k8s)
    route.create()
    # Never started: each sync_once runs in this thread, one poll at a time.
    sync = HTTPRouteSync(k8s, namespace, "model", gateway, registry)
    applied = sync.sync_once()
    assert applied is not None
    assert applied.config is not None
    assert gateway.backends() == {a.address: 5}
    generation = gateway.generation

    # The loop polls every 100 ms; an unchanged route must not reload nginx each time.
    assert sync.sync_once() is None
    assert sync.sync_once() is None
    assert gateway.generation == generation

    route.patch(_weights_patch([{"name": "svc-a", "port": 80, "weight": 0}]))
    changed = sync.sync_once()
    assert changed is not None
    assert changed.weights == {"svc-a": 0}
    assert gateway.generation == generation + 1
    assert sync.applied_weights() == {"svc-a": 0}
    assert burst(gateway.url, 10) == {(None, 503): 10}
