"""A model server as a child process of the harness, and a small client for it.

Each revision runs in a process of its own, as each would run in pods of its
own: stopping the candidate must not touch the stable revision, and a slow
candidate must not steal the stable revision's threads. The process is a
:class:`~e2e.harness.processes.ManagedProcess`, so it cannot outlive the
harness even when pytest is killed.
"""

from __future__ import annotations

import http.client
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e.harness.processes import ManagedProcess, StartupError, free_port, log_tail
from e2e.harness.prometheus import ScrapeTarget

REPO_ROOT = Path(__file__).resolve().parents[2]

# Another process may take the port between free_port() and our bind(); on a
# shared machine that happens, so a start is retried on a fresh port.
_START_ATTEMPTS = 3

SegmentFaults = Mapping[str, Mapping[str, float]]
"""Per-segment fault overrides, e.g. ``{"eu": {"error_rate": 0.3}}`` (see server.py)."""
FaultValue = float | SegmentFaults
"""What one fault is set to: a number, or for ``segments`` the overrides."""


class ModelServerProcess:
    """``python -m e2e.modelserver`` on a free loopback port."""

    def __init__(
        self,
        workdir: Path,
        *,
        revision: str,
        version: str,
        error_rate: float = 0.0,
        added_latency_seconds: float = 0.0,
        latency_multiplier: float = 1.0,
        score_shift: float = 0.0,
        segment_faults: SegmentFaults | None = None,
        seed: int | None = None,
    ) -> None:
        self.workdir = workdir
        self.revision = revision
        self.version = version
        self._initial_faults = {
            "error_rate": error_rate,
            "added_latency_seconds": added_latency_seconds,
            "latency_multiplier": latency_multiplier,
            "score_shift": score_shift,
        }
        self._segment_faults = {
            segment: dict(overrides) for segment, overrides in (segment_faults or {}).items()
        }
        self._seed = seed
        self.port = 0
        self.process: ManagedProcess | None = None

    # -- addresses ----------------------------------------------------------------------

    @property
    def address(self) -> str:
        """``127.0.0.1:port``: what Prometheus scrapes and nginx proxies to."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError(f"model server {self.revision} has not been started")
        return self.process.pid

    @property
    def log_path(self) -> Path:
        return self.workdir / "logs" / f"modelserver-{self.revision}.log"

    def scrape_target(self, namespace: str, **labels: str) -> ScrapeTarget:
        """How Prometheus finds this server: labelled as a pod of ``namespace`` would be."""
        return ScrapeTarget(
            f"{namespace}-{self.revision}",
            self.address,
            {"namespace": namespace, "revision": self.revision, **labels},
        )

    # -- lifecycle ----------------------------------------------------------------------

    def _argv(self, port: int) -> list[str]:
        faults = self._initial_faults
        argv = [
            sys.executable,
            "-m",
            "e2e.modelserver",
            "--port",
            str(port),
            "--revision",
            self.revision,
            "--model-version",
            self.version,
            "--error-rate",
            repr(faults["error_rate"]),
            "--added-latency",
            repr(faults["added_latency_seconds"]),
            "--latency-multiplier",
            repr(faults["latency_multiplier"]),
            "--score-shift",
            repr(faults["score_shift"]),
        ]
        if self._segment_faults:
            argv += ["--segment-faults", json.dumps(self._segment_faults)]
        if self._seed is not None:
            argv += ["--seed", str(self._seed)]
        return argv

    def start(self, timeout: float = 30) -> ModelServerProcess:
        # The child imports e2e from this checkout, wherever pytest was started.
        path = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
        env = {**os.environ, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1"}
        for attempt in range(1, _START_ATTEMPTS + 1):
            self.port = free_port()
            self.process = ManagedProcess(
                f"modelserver-{self.revision}",
                self._argv(self.port),
                self.log_path,
                env=env,
                cwd=REPO_ROOT,
            ).start()
            try:
                self.process.wait_ready(self._ready, timeout=timeout)
            except StartupError:
                self.process.stop()
                if attempt < _START_ATTEMPTS and "Address already in use" in log_tail(
                    self.log_path
                ):
                    continue
                raise
            except BaseException:
                self.process.stop()
                raise
            return self
        raise AssertionError("unreachable: the last attempt raises")

    def _ready(self) -> bool:
        status, _ = self.request("GET", "/ready", timeout=2)
        return status == 200

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(grace=5.0)

    def __enter__(self) -> ModelServerProcess:
        return self.start() if self.process is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- client -------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        timeout: float = 10,
    ) -> tuple[int, Any]:
        """One request on a fresh connection; returns (status, decoded JSON or text)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            data = b"" if body is None else json.dumps(body).encode()
            headers = {"Content-Type": "application/json"} if body is not None else {}
            connection.request(
                method, path, body=data if method == "POST" else None, headers=headers
            )
            response = connection.getresponse()
            raw = response.read()
            if response.getheader("Content-Type", "").startswith("application/json"):
                return response.status, json.loads(raw)
            return response.status, raw.decode()
        finally:
            connection.close()

    def faults(self) -> dict[str, Any]:
        status, body = self.request("GET", "/admin/faults")
        if status != 200:
            raise RuntimeError(f"GET /admin/faults answered {status}: {body}")
        return dict(body)

    def set_faults(self, **faults: FaultValue) -> dict[str, Any]:
        """Change some faults at run time; returns all of them.

        E.g. ``error_rate=0.2``, or ``segments={"eu": {"error_rate": 1.0}}``,
        which replaces every per-segment override (``segments={}`` drops them).
        """
        status, body = self.request("POST", "/admin/faults", faults)
        if status != 200:
            raise ValueError(f"POST /admin/faults answered {status}: {body}")
        return dict(body)

    def predict(
        self, features: Sequence[float] | None = None, *, segment: str | None = None
    ) -> tuple[int, dict[str, Any]]:
        """One prediction; without features the server draws its own, and likewise the segment."""
        document: dict[str, Any] = {}
        if features is not None:
            document["features"] = list(features)
        if segment is not None:
            document["segment"] = segment
        status, body = self.request("POST", "/predict", document or None)
        return status, dict(body)
