"""`python -m e2e.harness`: a local cluster that outlives the command.

``make cluster-up`` and ``make demo`` use it to leave a control plane (and
Prometheus) running for a person to explore with kubectl; ``make cluster-down``
stops every process recorded in the state directory. Tests never use this: they
own their processes through the pytest fixtures.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from e2e.harness.binaries import find_toolchain
from e2e.harness.kubernetes import ControlPlane, Tier, stop_detached
from e2e.harness.processes import StartupError, terminate_group
from e2e.harness.prometheus import PrometheusServer

_PROMETHEUS_STATE = "prometheus.json"


class ClusterExists(RuntimeError):
    """A cluster is already recorded in the state directory."""


def start_cluster(
    directory: Path, tier: Tier, *, with_prometheus: bool, gateway_api: bool
) -> tuple[ControlPlane, PrometheusServer | None]:
    """Start a detached cluster (and Prometheus) and record it for ``cluster_down``.

    Raises ClusterExists, or StartupError/OSError/TimeoutError with nothing left running.
    """
    directory = directory.resolve()
    if (directory / "state.json").exists():
        raise ClusterExists(
            f"a cluster is already recorded in {directory}; run `make cluster-down` first"
        )
    toolchain = find_toolchain()
    plane = ControlPlane(toolchain, directory / "control-plane", detached=True)
    prometheus: PrometheusServer | None = None
    try:
        plane.start(tier)
        if gateway_api:
            plane.install_gateway_api()
        if with_prometheus:
            prometheus = PrometheusServer(directory / "prometheus", detached=True).start()
    except BaseException:
        plane.stop()
        if prometheus is not None:
            prometheus.stop()
        raise
    state = {"control_plane": str(plane.workdir), "kubeconfig": str(plane.kubeconfig)}
    if prometheus is not None and prometheus.process is not None:
        state["prometheus_url"] = prometheus.url
        state["prometheus_pgid"] = str(prometheus.process.pid)
        state["prometheus_targets"] = str(prometheus.targets_dir)
    (directory / "state.json").write_text(json.dumps(state, indent=2))
    return plane, prometheus


def cluster_up(directory: Path, tier: Tier, *, with_prometheus: bool, gateway_api: bool) -> int:
    try:
        plane, prometheus = start_cluster(
            directory, tier, with_prometheus=with_prometheus, gateway_api=gateway_api
        )
    except ClusterExists as error:
        print(error, file=sys.stderr)
        return 1
    except (StartupError, OSError, TimeoutError) as error:
        print(f"cluster-up failed: {error}", file=sys.stderr)
        return 1
    print(f"{tier} tier is up ({plane.server}).")
    if prometheus is not None:
        print(f"Prometheus: {prometheus.url}  (targets: {prometheus.targets_dir})")
    print(f"export KUBECONFIG={plane.kubeconfig}")
    print(f"kubectl: {plane.toolchain.kubectl}")
    return 0


def cluster_down(directory: Path) -> int:
    directory = directory.resolve()
    state_file = directory / "state.json"
    if not state_file.exists():
        print(f"no cluster recorded in {directory}; nothing to stop")
        return 0
    state = json.loads(state_file.read_text())
    if "prometheus_pgid" in state:
        terminate_group(int(state["prometheus_pgid"]), grace=10.0)
    stopped = stop_detached(Path(state["control_plane"]), remove=False)
    state_file.unlink()
    shutil.rmtree(directory, ignore_errors=True)
    print(f"stopped: {', '.join(['prometheus'] * ('prometheus_pgid' in state) + stopped)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.harness", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start a detached cluster")
    up.add_argument("--dir", type=Path, default=Path(".cluster"))
    up.add_argument("--tier", choices=[t.value for t in Tier], default=Tier.FULL.value)
    up.add_argument("--prometheus", action="store_true", help="also start Prometheus")
    up.add_argument("--gateway-api", action="store_true", help="install the Gateway API CRDs")
    down = commands.add_parser("down", help="stop a detached cluster")
    down.add_argument("--dir", type=Path, default=Path(".cluster"))
    args = parser.parse_args(argv)
    if args.command == "up":
        return cluster_up(
            args.dir, Tier(args.tier), with_prometheus=args.prometheus, gateway_api=args.gateway_api
        )
    return cluster_down(args.dir)


if __name__ == "__main__":
    sys.exit(main())
