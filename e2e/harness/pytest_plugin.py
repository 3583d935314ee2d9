"""pytest fixtures for the real test control plane.

Session-scoped fixtures start each tier once, lazily: a run of unit tests
starts nothing, a run of integration tests starts the fast tier, and the first
e2e test raises that same API server to the full tier. Every test that touches
the cluster gets a namespace of its own, deleted afterwards.

Every test must carry exactly one tier marker (``unit``, ``integration`` or
``e2e``), so ``make unit``/``make integration``/``make e2e`` select exactly
what they say and nothing falls between them.
"""

from __future__ import annotations

import contextlib
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kr8s
import pytest
from kr8s.objects import Namespace

from e2e.harness.binaries import Toolchain, find_toolchain
from e2e.harness.kubernetes import ControlPlane, Tier
from e2e.harness.prometheus import PrometheusServer

TIER_MARKERS = ("unit", "integration", "e2e")
CRD_DIR = Path(__file__).resolve().parents[2] / "crds"
_run_dirs: list[Path] = []


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    unmarked = [
        item.nodeid
        for item in items
        if sum(1 for marker in TIER_MARKERS if item.get_closest_marker(marker)) != 1
    ]
    if unmarked:
        raise pytest.UsageError(
            "every test needs exactly one of the markers "
            f"{', '.join(TIER_MARKERS)}; these do not: {', '.join(unmarked)}"
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    # Under pytest-xdist each worker starts its own tiers; the controller prints
    # the summary, so the workers hand their run dirs over (`workeroutput`).
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        workeroutput["modelcanary_run_dirs"] = [str(run_dir) for run_dir in _run_dirs]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: object) -> None:
    """xdist's controller: collect a finished worker's run dirs."""
    output = getattr(node, "workeroutput", None) or {}
    _run_dirs.extend(Path(run_dir) for run_dir in output.get("modelcanary_run_dirs", ()))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    if exitstatus != 0 and _run_dirs:
        terminalreporter.write_sep("-", "component logs of this run")
        for run_dir in _run_dirs:
            terminalreporter.write_line(f"  {run_dir / 'logs'}")


@pytest.fixture(scope="session")
def toolchain() -> Toolchain:
    return find_toolchain()


@pytest.fixture(scope="session")
def control_plane(
    toolchain: Toolchain, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ControlPlane]:
    """The fast tier: etcd + kube-apiserver."""
    workdir = tmp_path_factory.mktemp("control-plane")
    _run_dirs.append(workdir)
    plane = ControlPlane(toolchain, workdir)
    try:
        plane.start(Tier.FAST)
        yield plane
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def full_control_plane(control_plane: ControlPlane) -> ControlPlane:
    """The full tier, raised in place from the fast tier's API server."""
    return control_plane.ensure_tier(Tier.FULL)


@pytest.fixture(scope="session")
def kubeconfig(control_plane: ControlPlane) -> Path:
    return control_plane.kubeconfig


@pytest.fixture(scope="session")
def k8s(control_plane: ControlPlane) -> kr8s.Api:
    """A synchronous kr8s client for the admin identity."""
    return kr8s.api(kubeconfig=str(control_plane.kubeconfig))


@pytest.fixture
def namespace(request: pytest.FixtureRequest, k8s: kr8s.Api) -> Iterator[str]:
    """A fresh namespace named after the test; deleted afterwards."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    ns = Namespace({"metadata": {"name": name, "labels": {"modelcanary.io/test": "true"}}}, api=k8s)
    ns.create()
    try:
        yield name
    finally:
        # Deletion finishes in the background; the next test has its own name.
        ns.delete()
        _release_finalized(k8s, name)


# What the operator finalizes. By teardown the test's operator has stopped, so
# nothing would ever remove its finalizer: the namespace would stay
# Terminating, and kube-controller-manager would keep retrying its deletion
# for the rest of the run (it did, for 10+ minutes a namespace, and slowed the
# controllers later tests rely on). The namespace goes anyway, with all that
# the operator would have cleaned up in it.
_FINALIZED = ("modeldeployments.modelcanary.io", "rollbackdrills.modelcanary.io")


def _release_finalized(k8s: kr8s.Api, namespace: str) -> None:
    for kind in _FINALIZED:
        try:
            leftovers = list(k8s.get(kind, namespace=namespace))
        except (kr8s.NotFoundError, kr8s.ServerError, ValueError):
            continue  # no such CRD on this plane, or the namespace is already gone
        for obj in leftovers:
            if not isinstance(obj, dict) and obj.raw["metadata"].get("finalizers"):
                with contextlib.suppress(kr8s.NotFoundError, kr8s.ServerError):  # already gone
                    obj.patch({"metadata": {"finalizers": None}})


@pytest.fixture(scope="session")
def modelcanary_crds(control_plane: ControlPlane) -> list[str]:
    """The project's generated CRDs (crds/*.yaml), installed and Established."""
    return control_plane.install_crds(sorted(CRD_DIR.glob("*.yaml")))


@pytest.fixture(scope="session")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    """Prometheus with a 1 s scrape interval over file-discovered loopback targets."""
    workdir = tmp_path_factory.mktemp("prometheus")
    _run_dirs.append(workdir)
    server = PrometheusServer(workdir)
    try:
        server.start()
        yield server
    finally:
        server.stop()
