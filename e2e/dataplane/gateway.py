"""Real nginx as the gateway, kept in line with a Gateway API HTTPRoute.

The operator shifts traffic by writing backend weights into an HTTPRoute. In a
cluster a Gateway controller turns those weights into proxy configuration; here
:class:`HTTPRouteSync` plays that controller: it reads the route from the test
API server and renders its weights into an nginx ``upstream``, which
:class:`NginxGateway` reloads. nginx's weighted round robin then really sends
that share of the requests to each model server, so a bad candidate produces
bad metrics in proportion to the traffic the operator gave it.

Two details matter for tests that measure what the operator did:

* a reload is confirmed, not assumed. Every configuration carries a generation
  number that nginx serves from ``/__generation``; ``set_backends`` returns
  only once nginx answers with the new one and the workers of the previous
  configuration have exited, so no request after it sees old weights;
* each applied configuration is recorded with monotonic timestamps, so a test
  can tell how long the route took to reach the data plane.

nginx runs entirely inside its work directory (configuration, pid file,
temporary files, logs), in the foreground, as a harness-owned process.
"""

from __future__ import annotations

import grp
import http.client
import logging
import os
import pwd
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import kr8s
from kr8s.objects import new_class

from e2e.harness.processes import ManagedProcess, StartupError, free_port, log_tail

log = logging.getLogger(__name__)

GENERATION_PATH = "/__generation"
GENERATION_HEADER = "X-Gateway-Generation"
UPSTREAM_HEADER = "X-Gateway-Upstream"

HTTPRoute = new_class("HTTPRoute.gateway.networking.k8s.io/v1", namespaced=True)

_START_ATTEMPTS = 3
_UPSTREAM = "model_backends"


class GatewayError(RuntimeError):
    """nginx refused a configuration or did not apply it in time."""


def find_nginx() -> Path:
    override = os.environ.get("MODELCANARY_NGINX")
    # Debian installs nginx in /usr/sbin, which is not on a normal user's PATH.
    found = override or shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if not found:
        raise FileNotFoundError(
            "nginx is not installed: `make test` installs Debian's package, "
            "or run `apt-get install nginx`"
        )
    return Path(found)


@dataclass(frozen=True)
class AppliedConfig:
    """One configuration that nginx serves, and when it started serving it."""

    generation: int
    backends: dict[str, int]
    """``host:port`` -> weight, as requested (weight-0 backends included)."""
    requested_at: float
    """``time.monotonic()`` when ``set_backends`` was called."""
    applied_at: float
    """``time.monotonic()`` when nginx first answered with this generation."""
    drained_at: float
    """``time.monotonic()`` when the previous configuration's workers were gone."""

    @property
    def reload_seconds(self) -> float:
        return self.applied_at - self.requested_at


def _validate_backends(weights: Mapping[str, int]) -> dict[str, int]:
    backends: dict[str, int] = {}
    for address, weight in weights.items():
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or any(c in address for c in " ;{}'\"\n"):
            raise ValueError(f"backend must be host:port, not {address!r}")
        if isinstance(weight, bool) or not isinstance(weight, int) or weight < 0:
            raise ValueError(f"weight of {address} must be an integer >= 0, not {weight!r}")
        backends[address] = weight
    return backends


class NginxGateway:
    """Debian's nginx on a free loopback port, proxying to weighted model servers."""

    def __init__(self, workdir: Path, *, binary: Path | None = None, workers: int = 1) -> None:
        self.workdir = workdir.resolve()
        self.binary = binary or find_nginx()
        self.workers = workers
        self.port = 0
        self.process: ManagedProcess | None = None
        self._lock = threading.Lock()
        self._generation = 0
        self._backends: dict[str, int] = {}
        self._history: list[AppliedConfig] = []

    # -- addresses and state --------------------------------------------------------------

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def conf_path(self) -> Path:
        return self.workdir / "nginx.conf"

    @property
    def log_path(self) -> Path:
        """nginx's error log (its stderr)."""
        return self.workdir / "logs" / "nginx.log"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / "logs" / "access.log"

    @property
    def pid(self) -> int:
        """The master process."""
        if self.process is None:
            raise RuntimeError("nginx has not been started")
        return self.process.pid

    @property
    def generation(self) -> int:
        """The generation of the configuration last applied."""
        with self._lock:
            return self._generation

    def backends(self) -> dict[str, int]:
        """``host:port`` -> weight last applied (weight-0 backends included)."""
        with self._lock:
            return dict(self._backends)

    def history(self) -> list[AppliedConfig]:
        """Every configuration applied since start, oldest first."""
        with self._lock:
            return list(self._history)

    def worker_pids(self) -> list[int]:
        """The master's children right now: its workers (old ones while they drain)."""
        return _children(self.pid) if self.process is not None else []

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: float = 30) -> NginxGateway:
        for directory in ("logs", "tmp"):
            (self.workdir / directory).mkdir(parents=True, exist_ok=True)
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            started_at = time.monotonic()
            with self._lock:
                self._generation = 1
                self._backends = {}
                self.conf_path.write_text(self.render(1, {}))
            self.process = ManagedProcess(
                "nginx",
                [*self._base_argv(self.conf_path), "-g", "daemon off;"],
                self.log_path,
                cwd=self.workdir,
            ).start()
            try:
                self.process.wait_ready(lambda: self.served_generation() == 1, timeout=timeout)
            except StartupError:
                self.process.stop()
                # Someone else took the port between free_port() and nginx's bind().
                if attempt < _START_ATTEMPTS and "Address already in use" in log_tail(
                    self.log_path, 5
                ):
                    continue
                raise
            except BaseException:
                self.process.stop()
                raise
            now = time.monotonic()
            with self._lock:
                self._history = [AppliedConfig(1, {}, started_at, now, now)]
            return self
        raise AssertionError("unreachable: the last attempt raises")

    def stop(self) -> None:
        if self.process is not None:
            # SIGTERM is nginx's fast shutdown; the group signal reaches workers too.
            self.process.stop(grace=10.0)

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def __enter__(self) -> NginxGateway:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- configuration --------------------------------------------------------------------

    def set_backends(self, weights: Mapping[str, int], *, timeout: float = 30) -> AppliedConfig:
        """Route to ``host:port`` backends by integer weight, and wait until nginx does.

        Weight-0 backends are left out (nginx needs weights >= 1); with no
        backend above 0, every request is answered 503.
        """
        backends = _validate_backends(weights)
        with self._lock:
            if self.process is None or not self.process.is_running():
                raise GatewayError("nginx is not running")
            requested_at = time.monotonic()
            generation = self._generation + 1
            candidate = self.workdir / "nginx.conf.next"
            candidate.write_text(self.render(generation, backends))
            self._test_config(candidate)
            candidate.replace(self.conf_path)
            previous_workers = set(self.worker_pids())
            os.kill(self.pid, signal.SIGHUP)
            applied_at = self._wait_for_generation(generation, timeout)
            drained_at = self._wait_for_exit(previous_workers, timeout)
            applied = AppliedConfig(generation, backends, requested_at, applied_at, drained_at)
            self._generation = generation
            self._backends = dict(backends)
            self._history.append(applied)
        log.info("nginx generation %d: %s (%.3fs)", generation, backends, applied.reload_seconds)
        return applied

    def render(self, generation: int, backends: Mapping[str, int]) -> str:
        """The whole nginx.conf for one generation of backends."""
        tmp = self.workdir / "tmp"
        serving = {address: weight for address, weight in backends.items() if weight > 0}
        if serving:
            servers = "\n".join(
                # max_fails=0: a failing backend keeps its share of the traffic,
                # so a crashed candidate shows up as errors, not as a silent shift.
                f"        server {address} weight={weight} max_fails=0;"
                for address, weight in sorted(serving.items())
            )
            upstream = f"""
    upstream {_UPSTREAM} {{
        # Shared by all workers, so the weighted round robin is one sequence.
        zone {_UPSTREAM} 64k;
{servers}
        keepalive 32;
        # Shorter than the model server's idle timeout: nginx never reuses a
        # connection that the other side has closed already.
        keepalive_timeout 10s;
    }}
"""
            root = f"""
        location / {{
            proxy_pass http://{_UPSTREAM};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
            # One request, one backend: retrying elsewhere would hide a bad candidate.
            proxy_next_upstream off;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
            add_header {GENERATION_HEADER} {generation} always;
            add_header {UPSTREAM_HEADER} $upstream_addr always;
        }}"""
        else:
            upstream = ""
            root = f"""
        location / {{
            add_header {GENERATION_HEADER} {generation} always;
            return 503 '{{"error": "no backend has a weight above 0"}}\\n';
        }}"""
        # Workers of a root master default to `nobody`, who cannot enter a
        # 0700 pytest temp dir; they run as the invoking user instead.
        user = ""
        if os.geteuid() == 0:
            user_name = pwd.getpwuid(os.geteuid()).pw_name
            group_name = grp.getgrgid(os.getegid()).gr_name
            user = f"user {user_name} {group_name};\n"
        return f"""# generation {generation}, rendered by e2e.dataplane.gateway
{user}worker_processes {self.workers};
pid {self.workdir / "nginx.pid"};
error_log stderr warn;
# Bounds how long a reload waits for the old workers' open requests.
worker_shutdown_timeout 10s;

events {{
    worker_connections 1024;
}}

http {{
    default_type application/json;
    server_tokens off;
    log_format gateway '$msec $status $request_time "$request" '
                       'upstream=$upstream_addr upstream_status=$upstream_status gen={generation}';
    access_log {self.access_log_path} gateway buffer=32k flush=1s;
    client_body_temp_path {tmp / "client_body"};
    proxy_temp_path {tmp / "proxy"};
    fastcgi_temp_path {tmp / "fastcgi"};
    uwsgi_temp_path {tmp / "uwsgi"};
    scgi_temp_path {tmp / "scgi"};
    keepalive_timeout 60s;
    keepalive_requests 100000;
{upstream}
    server {{
        listen 127.0.0.1:{self.port};

        location = {GENERATION_PATH} {{
            access_log off;
            add_header {GENERATION_HEADER} {generation} always;
            return 200 '{generation}\\n';
        }}
{root}
    }}
}}
"""

    def served_generation(self, timeout: float = 2.0) -> int | None:
        """The generation nginx answers with on a new connection, or None if it does not."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request("GET", GENERATION_PATH)
            response = connection.getresponse()
            response.read()
            value = response.getheader(GENERATION_HEADER)
        except OSError:
            return None
        finally:
            connection.close()
        return int(value) if value is not None and value.isdigit() else None

    # -- internals ------------------------------------------------------------------------

    def _base_argv(self, conf: Path) -> list[str]:
        # -e: errors before the configuration is read go to stderr too, never
        # to a compiled-in path under /var/log that a non-root user cannot write.
        return [str(self.binary), "-p", f"{self.workdir}/", "-c", str(conf), "-e", "stderr"]

    def _test_config(self, conf: Path) -> None:
        result = subprocess.run(
            [*self._base_argv(conf), "-t", "-q"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        if result.returncode != 0:
            raise GatewayError(f"nginx refused {conf}:\n{result.stdout}{result.stderr}")

    def _wait_for_generation(self, generation: int, timeout: float) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.is_running():
                raise GatewayError(f"nginx exited during a reload:\n{log_tail(self.log_path)}")
            if self.served_generation() == generation:
                return time.monotonic()
            time.sleep(0.01)
        raise GatewayError(
            f"nginx did not serve generation {generation} within {timeout:.0f}s:\n"
            f"{log_tail(self.log_path)}"
        )

    def _wait_for_exit(self, workers: set[int], timeout: float) -> float:
        # Old workers finish their requests in flight and close idle keep-alive
        # connections; until they are gone a new connection may still meet one.
        deadline = time.monotonic() + timeout
        while workers & set(self.worker_pids()):
            if time.monotonic() >= deadline:
                raise GatewayError(f"old nginx workers {sorted(workers)} still running")
            time.sleep(0.01)
        return time.monotonic()


def _children(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may itself contain spaces or ")".
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 1 and fields[0] != "Z" and int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


# --------------------------------------------------------------------------- HTTPRoute


Resolver = Callable[[str, int | None], str | None]
"""(Service name, port or None) -> ``host:port`` of the process serving it, or None."""


class ServiceRegistry:
    """Which model-server process serves which Service: a :data:`Resolver` for tests.

    There are no pod IPs on loopback, so a test says where each Service lives.
    A registration without a port answers for every port of that Service.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._addresses: dict[tuple[str, int | None], str] = {}

    def register(self, service: str, address: str, port: int | None = None) -> None:
        with self._lock:
            self._addresses[(service, port)] = address

    def unregister(self, service: str, port: int | None = None) -> None:
        with self._lock:
            self._addresses.pop((service, port), None)

    def __call__(self, service: str, port: int | None) -> str | None:
        with self._lock:
            return self._addresses.get((service, port)) or self._addresses.get((service, None))


@dataclass(frozen=True)
class RouteSyncEvent:
    """One change of the route's weights that reached nginx."""

    weights: dict[str, int]
    """Service name -> weight, for every backendRef that resolved to a process."""
    unresolved: tuple[str, ...]
    """backendRef Service names with no process registered; they get no traffic."""
    resource_version: str | None
    """The route's resourceVersion that was read, None when the route is missing."""
    observed_at: float
    """``time.monotonic()`` when the sync read this version of the route."""
    applied_at: float
    """``time.monotonic()`` when nginx served it (``observed_at`` when no reload was needed)."""
    config: AppliedConfig | None = field(default=None)
    """The nginx configuration applied for it, if the addresses or weights changed."""


class HTTPRouteSync:
    """Keeps an :class:`NginxGateway` in line with one HTTPRoute's first rule.

    A background thread reads the route every ``interval`` seconds. Polling, not
    a watch: a read is a few milliseconds on loopback, and a poll loop stops
    promptly and cannot miss an event across a reconnect.
    """

    def __init__(
        self,
        api: kr8s.Api,
        namespace: str,
        route: str,
        gateway: NginxGateway,
        resolver: Resolver,
        *,
        interval: float = 0.1,
    ) -> None:
        self.api = api
        self.namespace = namespace
        self.route = route
        self.gateway = gateway
        self.resolver = resolver
        self.interval = interval
        self.last_error: BaseException | None = None
        self._changed = threading.Condition()
        self._applied: dict[str, int] | None = None
        self._history: list[RouteSyncEvent] = []
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._warned: set[str] = set()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> HTTPRouteSync:
        if self._thread is not None:
            raise RuntimeError("this HTTPRouteSync has been started already")
        self._thread = threading.Thread(
            target=self._run, name=f"httproute-sync-{self.namespace}/{self.route}", daemon=True
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 30) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                raise TimeoutError(f"{self._thread.name} did not stop within {timeout:.0f}s")

    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> HTTPRouteSync:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what was applied -----------------------------------------------------------------

    def applied_weights(self) -> dict[str, int]:
        """Service name -> weight last applied to nginx (empty before the first sync)."""
        with self._changed:
            return dict(self._applied or {})

    def history(self) -> list[RouteSyncEvent]:
        with self._changed:
            return list(self._history)

    def wait_until_applied(self, weights: Mapping[str, int], timeout: float = 30) -> RouteSyncEvent:
        """Block until exactly ``weights`` (Service name -> weight) are applied.

        Returns the event that applied them, whose ``applied_at`` tells when.
        """
        wanted = dict(weights)
        deadline = time.monotonic() + timeout
        with self._changed:
            while self._applied != wanted or not self._history:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"route {self.namespace}/{self.route}: weights {wanted} not applied "
                        f"within {timeout:.0f}s; applied: {self._applied}; "
                        f"last error: {self.last_error!r}"
                    )
                self._changed.wait(min(remaining, 1.0))
            return self._history[-1]

    # -- the loop -------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                self.sync_once()
            except Exception as error:
                # The API server may be briefly unavailable; the next poll retries.
                if repr(error) != repr(self.last_error):
                    log.warning("syncing route %s/%s: %r", self.namespace, self.route, error)
                self.last_error = error
            self._stopping.wait(self.interval)

    def sync_once(self) -> RouteSyncEvent | None:
        """Read the route once and apply it if it changed; returns the event if so."""
        observed_at = time.monotonic()
        route: dict[str, Any] | None = None
        # A list with a field selector, not a get by name: kr8s retries a
        # missing object's get for seconds, and a missing route is an answer.
        for found in self.api.get(
            HTTPRoute, namespace=self.namespace, field_selector={"metadata.name": self.route}
        ):
            route = dict(found if isinstance(found, dict) else found.raw)
        weights, backends, unresolved = self._resolve(route)
        with self._changed:
            unchanged = weights == self._applied
        if unchanged and backends == self.gateway.backends():
            return None
        config = None
        if backends != self.gateway.backends():
            config = self.gateway.set_backends(backends)
        event = RouteSyncEvent(
            weights=weights,
            unresolved=unresolved,
            resource_version=route["metadata"].get("resourceVersion") if route else None,
            observed_at=observed_at,
            applied_at=config.applied_at if config else observed_at,
            config=config,
        )
        with self._changed:
            self._applied = weights
            self._history.append(event)
            self._changed.notify_all()
        return event

    def _resolve(
        self, route: Mapping[str, Any] | None
    ) -> tuple[dict[str, int], dict[str, int], tuple[str, ...]]:
        """Service weights, address weights, and unresolved names of the first rule."""
        rules = (route or {}).get("spec", {}).get("rules") or []
        refs = (rules[0].get("backendRefs") or []) if rules else []
        weights: dict[str, int] = {}
        backends: dict[str, int] = {}
        unresolved: list[str] = []
        for ref in refs:
            if ref.get("group", "") not in ("", "core") or ref.get("kind", "Service") != "Service":
                continue
            name = str(ref["name"])
            weight = int(ref.get("weight", 1))  # the Gateway API default
            address = self.resolver(name, ref.get("port"))
            if address is None:
                unresolved.append(name)
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("backendRef %s has no registered model server; no traffic", name)
                continue
            weights[name] = weights.get(name, 0) + weight
            backends[address] = backends.get(address, 0) + weight
        return weights, backends, tuple(unresolved)
