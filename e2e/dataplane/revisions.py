"""Real model-server processes for the revisions the operator creates.

kwok makes Pods Ready without running their containers, so on the full tier a
revision's Deployment has no server behind it. This loop plays the kubelet's
missing half: for every revision Deployment of a ModelDeployment with replicas
above zero it runs one real model server on loopback, registers it as the
backend of that revision's Service (for the nginx route sync) and as a
Prometheus target labelled ``namespace`` and ``revision``. A revision scaled
to zero has its server stopped, as its pods would be.

What a revision's server does wrong is up to the test: ``faults_for`` maps the
model version from the pod template's ``MODEL_VERSION`` to fault settings, so
"version 2.0.0 answers 20% errors" is one line in a test, and so is "version
2.0.0 fails 30% of segment eu's requests":
``{"segments": {"eu": {"error_rate": 0.3}}}``. The settings are those of
``POST /admin/faults`` (see :class:`~e2e.modelserver.Faults`) and are checked
here, so a misspelt fault fails the sync loudly rather than being ignored.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import kr8s
from kr8s.objects import Deployment

from e2e.dataplane.gateway import ServiceRegistry
from e2e.harness.kubernetes import list_objects
from e2e.harness.prometheus import PrometheusServer
from e2e.modelserver import Faults, ModelServerProcess
from e2e.modelserver.process import FaultValue

log = logging.getLogger(__name__)
# Any, not float: ``segments`` holds a nested mapping, and a test's
# ``Mapping[str, float]`` of plain faults must still fit.
FaultsFor = Callable[[str], Mapping[str, Any]]


def _no_faults(version: str) -> Mapping[str, Any]:
    return {}


def _env(deployment: Mapping[str, Any], name: str) -> str | None:
    containers = deployment["spec"]["template"]["spec"].get("containers") or []
    for entry in containers[0].get("env", []) if containers else []:
        if entry.get("name") == name:
            value = entry.get("value")
            return str(value) if value is not None else None
    return None


class RevisionServers:
    """Keep one model server per running revision of ``md_name``; a background thread."""

    def __init__(
        self,
        api: kr8s.Api,
        namespace: str,
        md_name: str,
        *,
        workdir: Path,
        registry: ServiceRegistry,
        prometheus: PrometheusServer,
        faults_for: FaultsFor = _no_faults,
        interval: float = 0.2,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.md_name = md_name
        self.workdir = workdir
        self.registry = registry
        self.prometheus = prometheus
        self.faults_for = faults_for
        self.interval = interval
        self.servers: dict[str, ModelServerProcess] = {}
        self._services: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None

    def start(self) -> RevisionServers:
        self._thread = threading.Thread(target=self._run, name="revision-servers", daemon=True)
        self._thread.start()
        return self

    def is_alive(self) -> bool:
        """Whether the sync thread still runs (it is meant to outlive any failure)."""
        return self._thread is not None and self._thread.is_alive()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        with self._lock:
            for revision in list(self.servers):
                self._stop_server(revision)

    def __enter__(self) -> RevisionServers:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def server(self, revision: str) -> ModelServerProcess | None:
        with self._lock:
            return self.servers.get(revision)

    def running(self) -> set[str]:
        with self._lock:
            return set(self.servers)

    def set_faults(self, revision: str, **faults: FaultValue) -> None:
        server = self.server(revision)
        if server is None:
            raise LookupError(f"no server runs revision {revision}")
        server.set_faults(**faults)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sync_once()
                self.last_error = None
            except Exception as error:
                # The poller outlives any one failed poll: an API server restarting
                # (httpx's ConnectError is no OSError), a 5xx, one odd object.
                self.last_error = str(error)
                log.warning("revision servers: %s", error)
            self._stop.wait(self.interval)

    def sync_once(self) -> None:
        selector = {"modelcanary.io/model": self.md_name}
        wanted: dict[str, Mapping[str, Any]] = {}
        for found in list_objects(
            self.api, Deployment, namespace=self.namespace, label_selector=selector
        ):
            raw = found.raw
            revision = raw["metadata"].get("labels", {}).get("modelcanary.io/revision")
            if revision and (raw["spec"].get("replicas") or 0) > 0:
                wanted[revision] = raw
        with self._lock:
            for revision in set(self.servers) - set(wanted):
                self._stop_server(revision)
            for revision, deployment in wanted.items():
                if revision not in self.servers:
                    self._start_server(revision, deployment)

    def _start_server(self, revision: str, deployment: Mapping[str, Any]) -> None:
        version = _env(deployment, "MODEL_VERSION") or "unknown"
        try:
            faults = Faults().updated(self.faults_for(version))
        except ValueError as error:
            # A RuntimeError, so the sync loop reports it and carries on.
            raise RuntimeError(f"faults for version {version}: {error}") from error
        server = ModelServerProcess(
            self.workdir / f"server-{revision}",
            revision=revision,
            version=version,
            error_rate=faults.error_rate,
            added_latency_seconds=faults.added_latency_seconds,
            latency_multiplier=faults.latency_multiplier,
            score_shift=faults.score_shift,
            segment_faults=faults.segments,
        ).start()
        self.servers[revision] = server
        service = deployment["metadata"]["name"]
        self._services[revision] = service
        self.registry.register(service, server.address)
        self.prometheus.add_target(server.scrape_target(self.namespace))

    def _stop_server(self, revision: str) -> None:
        server = self.servers.pop(revision)
        self.registry.unregister(self._services.pop(revision, f"{self.md_name}-{revision}"))
        self.prometheus.remove_target(f"{self.namespace}-{revision}")
        server.stop()
