"""Where the control-plane binaries come from.

``e2e/toolchain/build.sh`` builds them from the Go module proxy into
``~/.cache/modelcanary/<component>-<version>/`` (see ``versions.env``). A user
of controller-runtime's setup-envtest can point ``KUBEBUILDER_ASSETS`` at their
own etcd, kube-apiserver and kubectl; those then win over the cache. The
binaries envtest never ships (kube-controller-manager, kube-scheduler, kwok,
helm) always come from the cache.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

TOOLCHAIN_DIR = Path(__file__).resolve().parent.parent / "toolchain"
VERSIONS_FILE = TOOLCHAIN_DIR / "versions.env"
BUILD_SCRIPT = TOOLCHAIN_DIR / "build.sh"
ENVTEST_BINARIES = ("etcd", "kube-apiserver", "kubectl")


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    versions: dict[str, str] = {}
    for raw_line in path.read_text().splitlines():
        line = raw_line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            versions[key.strip()] = value.strip()
    return versions


def cache_root() -> Path:
    override = os.environ.get("MODELCANARY_CACHE")
    return Path(override) if override else Path.home() / ".cache" / "modelcanary"


@dataclass(frozen=True)
class Toolchain:
    etcd: Path
    kube_apiserver: Path
    kube_controller_manager: Path
    kube_scheduler: Path
    kubectl: Path
    kwok: Path
    kwok_stages: Path
    helm: Path
    gateway_api_crds: Path
    prometheus_operator_crds: Path
    versions: dict[str, str]

    def missing(self) -> list[Path]:
        paths = [
            self.etcd,
            self.kube_apiserver,
            self.kube_controller_manager,
            self.kube_scheduler,
            self.kubectl,
            self.kwok,
            self.helm,
        ]
        missing = [path for path in paths if not os.access(path, os.X_OK)]
        folders = (self.kwok_stages, self.gateway_api_crds, self.prometheus_operator_crds)
        missing += [p for p in folders if not p.is_dir()]
        return missing


def find_toolchain(*, build: bool = True) -> Toolchain:
    """Locate every binary, building the missing ones first when ``build`` is set."""
    versions = read_versions()
    root = cache_root()

    def cached(component: str, version_key: str) -> Path:
        return root / f"{component}-{versions[version_key]}"

    kubernetes = cached("kubernetes", "KUBERNETES_VERSION")
    envtest = os.environ.get("KUBEBUILDER_ASSETS")

    def envtest_or(name: str, fallback: Path) -> Path:
        if envtest and os.access(Path(envtest) / name, os.X_OK):
            return Path(envtest) / name
        return fallback / name

    kwok = cached("kwok", "KWOK_VERSION")
    toolchain = Toolchain(
        etcd=envtest_or("etcd", cached("etcd", "ETCD_VERSION")),
        kube_apiserver=envtest_or("kube-apiserver", kubernetes),
        kube_controller_manager=kubernetes / "kube-controller-manager",
        kube_scheduler=kubernetes / "kube-scheduler",
        kubectl=envtest_or("kubectl", kubernetes),
        kwok=kwok / "kwok",
        kwok_stages=kwok / "stages",
        helm=cached("helm", "HELM_VERSION") / "helm",
        gateway_api_crds=cached("gateway-api", "GATEWAY_API_VERSION"),
        prometheus_operator_crds=cached("prometheus-operator-crds", "PROMETHEUS_OPERATOR_VERSION"),
        versions=versions,
    )
    stale = toolchain.missing()
    if stale and build:
        subprocess.run([str(BUILD_SCRIPT)], check=True)
    if missing := toolchain.missing():
        raise FileNotFoundError(
            "control-plane binaries are missing (run `make toolchain`): "
            + ", ".join(str(path) for path in missing)
        )
    return toolchain


@dataclass(frozen=True)
class ArgoRolloutsBinaries:
    """Argo Rollouts' controller and its CRDs, for the scale bench's side-by-side.

    Kept apart from :class:`Toolchain` on purpose: no test needs it, so
    ``make test`` neither builds it nor waits for it (``make argo-rollouts``).
    """

    controller: Path
    crds: Path
    version: str

    def missing(self) -> list[Path]:
        missing = [] if os.access(self.controller, os.X_OK) else [self.controller]
        return missing + ([] if self.crds.is_dir() else [self.crds])


def find_argo_rollouts(*, build: bool = True) -> ArgoRolloutsBinaries:
    """Locate the Argo Rollouts build, running ``build.sh argo-rollouts`` when missing."""
    version = read_versions()["ARGO_ROLLOUTS_VERSION"]
    folder = cache_root() / f"argo-rollouts-{version}"
    found = ArgoRolloutsBinaries(folder / "rollouts-controller", folder / "crds", version)
    if found.missing() and build:
        subprocess.run([str(BUILD_SCRIPT), "argo-rollouts"], check=True)
    if missing := found.missing():
        raise FileNotFoundError(
            "Argo Rollouts is not built (run `make argo-rollouts`): "
            + ", ".join(str(path) for path in missing)
        )
    return found
