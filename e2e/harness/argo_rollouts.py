"""Argo Rollouts' controller as a real process beside the operator, for the scale bench.

``e2e/toolchain/build.sh argo-rollouts`` (``make argo-rollouts``) builds the
upstream ``rollouts-controller`` from the Go module proxy; this class installs
its CRDs on a :class:`ControlPlane` and runs it outside the cluster against
the test API server, the way ``OperatorProcess`` runs ours, so that both can
be measured in the same run on the same cluster.

The flags are chosen so that the comparison with our operator is fair:

* **Its own identity.** It authenticates with a client certificate for
  ``user`` (default :data:`ARGO_USER`), in ``system:masters`` like the bench's
  operator, so every request it makes can be told apart in the API server's
  audit log and RBAC never slows or fails either of them.
* **The same client rate limit.** ``--qps``/``--burst`` default to our
  operator's own defaults (``modelcanary.ratelimit``: 100/s, bursts of 200)
  instead of Argo's 40/80, so neither controller is throttled harder than
  the other when N objects arrive at once.
* **No leader election**, as our operator runs by default (standalone, no
  ``--peering``). Upstream's default is on, which costs a Lease GET and PUT
  every 2 s at rest; ``leader_elect=True`` turns it back on (in
  :data:`CONTROLLER_NAMESPACE`) for an HA comparison, where our operator
  runs with ``--peering``.
* **Cluster-wide**, like the bench's operator (``--namespaced`` is not set),
  with upstream's other defaults left alone: 10 rollout workers, the 15 min
  informer resync (a resync re-queues from the watch cache; it sends no
  request), log level info.

It serves ``/metrics`` and ``/healthz`` on free ports; upstream binds them
to 0.0.0.0 with no flag to change that, so on a shared machine they are
reachable from outside for as long as the bench runs.
"""

from __future__ import annotations

import os
import signal
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from e2e.harness.binaries import ArgoRolloutsBinaries
from e2e.harness.kubernetes import ControlPlane
from e2e.harness.processes import ManagedProcess, free_port
from modelcanary.ratelimit import DEFAULT_BURST, DEFAULT_QPS

ARGO_USER = "argo-rollouts-bench-controller"
# Where upstream looks for its notification ConfigMap/Secret and, with leader
# election, its Lease (defaults.Namespace(): POD_NAMESPACE, else this).
CONTROLLER_NAMESPACE = "argo-rollouts"
ROLLOUTS_PATH = "/apis/argoproj.io/v1alpha1"
# Logged once after every informer cache synced and the workers started.
STARTED_LINE = "Started controller"


class ArgoRolloutsController:
    def __init__(
        self,
        binaries: ArgoRolloutsBinaries,
        plane: ControlPlane,
        workdir: Path,
        *,
        user: str = ARGO_USER,
        qps: float = DEFAULT_QPS,
        burst: int = DEFAULT_BURST,
        leader_elect: bool = False,
        extra_args: Sequence[str] = (),
    ) -> None:
        self.binaries = binaries
        self.plane = plane
        self.workdir = workdir
        self.user = user
        self.qps = qps
        self.burst = burst
        self.leader_elect = leader_elect
        self.extra_args = list(extra_args)
        self.process: ManagedProcess | None = None
        self.metrics_port = 0
        self.healthz_port = 0
        self.starts = 0

    # -- the cluster side ------------------------------------------------------------

    def install_crds(self) -> list[str]:
        """Rollout, AnalysisRun, AnalysisTemplate, ClusterAnalysisTemplate and
        Experiment (the controller's informers watch all five), and its namespace."""
        names = self.plane.install_crds(sorted(self.binaries.crds.glob("*.yaml")))
        present = self.plane.kubectl("get", "namespace", CONTROLLER_NAMESPACE, check=False)
        if present.returncode != 0:
            self.plane.kubectl("create", "namespace", CONTROLLER_NAMESPACE)
        return names

    # -- the process -----------------------------------------------------------------

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the Argo Rollouts controller has not been started")
        return self.process.pid

    def argv(self, kubeconfig: Path) -> list[str]:
        return [
            str(self.binaries.controller),
            f"--kubeconfig={kubeconfig}",
            f"--qps={self.qps:g}",
            f"--burst={self.burst}",
            f"--leader-elect={'true' if self.leader_elect else 'false'}",
            f"--metricsPort={self.metrics_port}",
            f"--healthzPort={self.healthz_port}",
            "--loglevel=info",
            "--logformat=text",
            *self.extra_args,
        ]

    def start(self, timeout: float = 60) -> ArgoRolloutsController:
        """Start it and wait until its informers have synced and its workers run.

        ``/healthz`` and ``/metrics`` answer as soon as the process runs, before
        it has listed anything; upstream logs "Started controller" once every
        informer cache has synced, which is when it can act, as our operator
        can once its liveness probe answers.
        """
        kubeconfig = self.plane.kubeconfig_for(self.user, ["system:masters"])
        self.metrics_port, self.healthz_port = free_port(), free_port()
        self.starts += 1
        env = {**os.environ, "POD_NAMESPACE": CONTROLLER_NAMESPACE}
        env.pop("KUBECONFIG", None)
        self.process = ManagedProcess(
            "argo-rollouts",
            self.argv(kubeconfig),
            self.workdir / "logs" / f"argo-rollouts-{self.starts}.log",
            env=env,
            cwd=self.workdir,
        ).start()
        log = self.process.log_path
        self.process.wait_ready(
            lambda: _ok(self.metrics_url) and STARTED_LINE in log.read_text(errors="replace"),
            timeout=timeout,
        )
        return self

    def is_running(self) -> bool:
        return self.process is not None and self.process.is_running()

    def kill(self) -> None:
        """SIGKILL, as an OOM kill or a node loss would."""
        if self.process is not None and self.process.is_running():
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.stop(grace=5)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:  # noqa: S310
            return str(response.read().decode())

    def log_text(self) -> str:
        return "\n".join(
            path.read_text(errors="replace")
            for path in sorted((self.workdir / "logs").glob("argo-rollouts-*.log"))
        )


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310
            return bool(response.status == 200)
    except OSError:
        return False
