"""The operator under test, as a real process: ``python -m modelcanary run``.

Tests run it exactly as a user would outside the cluster, against the test
API server's admin kubeconfig, watching only the test's namespace so that
tests in one session never see each other's objects. It can be SIGKILLed and
started again, which is how restart safety is tested. With ``peering`` it
runs as one replica of an HA pair, as the chart's pods do with ``ha.enabled``.
"""

from __future__ import annotations

import os
import signal
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

from e2e.harness.processes import ManagedProcess, free_port

REPO_ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: Path,
        namespace: str | None,
        workdir: Path,
        *,
        peering: str | None = None,
        peering_lifetime: int | None = None,
        env: Mapping[str, str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``namespace=None`` watches the whole cluster, as the chart's cluster mode does.

        ``peering`` names the (Cluster)KopfPeering to elect the active replica
        through (standalone without it); ``env`` adds to the process's
        environment, e.g. ``POD_ID``, the replica's name in the peering status;
        ``extra_args`` go after ``run``'s own (e.g. ``--max-concurrent-passes``).
        """
        self.kubeconfig = kubeconfig
        self.namespace = namespace
        self.workdir = workdir
        self.peering = peering
        self.peering_lifetime = peering_lifetime
        self.env = dict(env or {})
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None
        self.metrics_port = 0
        self.starts = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self, timeout: float = 60) -> OperatorProcess:
        self.metrics_port = free_port()
        liveness = free_port()
        self.starts += 1
        env = {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "operator"), str(REPO_ROOT)]),
            **self.env,
        }
        peering = [
            *(["--peering", self.peering] if self.peering else []),
            *(
                ["--peering-lifetime", str(self.peering_lifetime)]
                if self.peering_lifetime is not None
                else []
            ),
        ]
        self.process = ManagedProcess(
            "modelcanary-operator",
            [
                sys.executable,
                "-m",
                "modelcanary",
                "run",
                *(["--namespace", self.namespace] if self.namespace else []),
                "--metrics-port",
                str(self.metrics_port),
                "--liveness",
                f"http://127.0.0.1:{liveness}/healthz",
                *peering,
                *self.extra_args,
            ],
            self.workdir / "logs" / f"operator-{self.starts}.log",
            env=env,
            cwd=REPO_ROOT,
        ).start()
        self.process.wait_ready(
            lambda: _ok(f"http://127.0.0.1:{liveness}/healthz"), timeout=timeout
        )
        return self

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node loss would: no cleanup runs."""
        if self.process is not None and self.process.is_running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.stop(grace=5)

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics(self, names: Sequence[str] = ()) -> str:
        """The operator's /metrics; only the families ``names`` when given (prometheus_client's
        ``name[]`` filter), which a poller of one figure needs: rendering every family of
        a thousand objects takes the operator's GIL for as long as the poll lasts."""
        query = "?" + "&".join(f"name[]={name}" for name in names) if names else ""
        with urllib.request.urlopen(self.metrics_url + query, timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    def log_text(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted((self.workdir / "logs").glob("operator-*.log"))
        )


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
