"""The pinned toolchain: wrapper Go modules and binary lookup."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from e2e.harness.binaries import (
    BUILD_SCRIPT,
    ENVTEST_BINARIES,
    TOOLCHAIN_DIR,
    Toolchain,
    cache_root,
    find_argo_rollouts,
    find_toolchain,
    read_versions,
)

pytestmark = pytest.mark.unit


def test_versions_meet_the_supported_floor() -> None:
    versions = read_versions()
    major, minor, _ = (int(x) for x in versions["KUBERNETES_VERSION"].lstrip("v").split("."))
    assert (major, minor) >= (1, 34)
    assert re.fullmatch(r"v3\.[56]\.\d+", versions["ETCD_VERSION"])
    for key in ("KWOK_VERSION", "HELM_VERSION", "GATEWAY_API_VERSION"):
        assert re.fullmatch(r"v\d+\.\d+\.\d+", versions[key]), key


def test_kubernetes_wrapper_pins_every_staging_module_to_its_published_twin() -> None:
    versions = read_versions()
    twin = "v0." + versions["KUBERNETES_VERSION"].removeprefix("v1.")
    go_mod = (TOOLCHAIN_DIR / "kubernetes" / "go.mod").read_text()
    assert f"k8s.io/kubernetes {versions['KUBERNETES_VERSION']}" in go_mod
    replaced = re.findall(r"^\s+(k8s\.io/[\w.-]+) => (k8s\.io/[\w.-]+) (v\S+)$", go_mod, re.M)
    assert len(replaced) >= 25
    for source, target, version in replaced:
        assert source == target
        assert version == twin, f"{source} is pinned to {version}, not {twin}"
    for core in ("k8s.io/api", "k8s.io/apimachinery", "k8s.io/client-go", "k8s.io/apiserver"):
        assert core in {source for source, _, _ in replaced}
    # The upstream godebug line keeps runtime behaviour identical to upstream builds.
    assert re.search(r"^godebug default=go1\.\d+$", go_mod, re.M)
    assert (TOOLCHAIN_DIR / "kubernetes" / "go.sum").stat().st_size > 0


def test_etcd_wrapper_requires_the_pinned_release() -> None:
    versions = read_versions()
    go_mod = (TOOLCHAIN_DIR / "etcd" / "go.mod").read_text()
    assert f"go.etcd.io/etcd/server/v3 {versions['ETCD_VERSION']}" in go_mod
    assert "=> ../" not in go_mod
    assert (TOOLCHAIN_DIR / "etcd" / "go.sum").stat().st_size > 0


def test_argo_rollouts_wrapper_repeats_upstreams_replace_block() -> None:
    # A dependency's replace directives are ignored, so the wrapper must carry
    # upstream's: every k8s.io staging module pinned to one published twin.
    versions = read_versions()
    assert re.fullmatch(r"v\d+\.\d+\.\d+", versions["ARGO_ROLLOUTS_VERSION"])
    go_mod = (TOOLCHAIN_DIR / "argo-rollouts" / "go.mod").read_text()
    assert f"github.com/argoproj/argo-rollouts {versions['ARGO_ROLLOUTS_VERSION']}" in go_mod
    replaced = re.findall(r"^\s+(k8s\.io/[\w.-]+) => (k8s\.io/[\w.-]+) (v\S+)$", go_mod, re.M)
    assert len(replaced) >= 25
    assert all(source == target for source, target, _ in replaced)
    pinned = {source: version for source, _, version in replaced}
    twin = pinned["k8s.io/client-go"]
    for core in ("k8s.io/api", "k8s.io/apimachinery", "k8s.io/kubectl", "k8s.io/kubelet"):
        assert pinned[core] == twin, core
    assert "=> ../" not in go_mod
    assert "=> ./" not in go_mod
    assert (TOOLCHAIN_DIR / "argo-rollouts" / "go.sum").stat().st_size > 0


def test_argo_rollouts_is_never_built_by_all() -> None:
    # `make test` runs `build.sh all`; only the bench needs Argo Rollouts.
    script = BUILD_SCRIPT.read_text()
    patterns = re.findall(r"^\s+([\w|-]+)\)$", script, re.M)
    assert any(p == "argo-rollouts" for p in patterns)
    assert not any("all" in p.split("|") and "argo-rollouts" in p.split("|") for p in patterns)


def test_argo_rollouts_lookup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELCANARY_CACHE", str(tmp_path))
    version = read_versions()["ARGO_ROLLOUTS_VERSION"]
    with pytest.raises(FileNotFoundError, match="make argo-rollouts"):
        find_argo_rollouts(build=False)
    folder = tmp_path / f"argo-rollouts-{version}"
    _executable(folder / "rollouts-controller")
    (folder / "crds").mkdir()
    found = find_argo_rollouts(build=False)
    assert found.controller == folder / "rollouts-controller"
    assert found.crds == folder / "crds"
    assert found.version == version


def test_cache_is_keyed_by_version(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MODELCANARY_CACHE", str(tmp_path))
    monkeypatch.delenv("KUBEBUILDER_ASSETS", raising=False)
    versions = read_versions()
    with pytest.raises(FileNotFoundError, match="make toolchain"):
        find_toolchain(build=False)
    assert cache_root() == tmp_path
    expected = tmp_path / f"kubernetes-{versions['KUBERNETES_VERSION']}" / "kube-apiserver"
    _fake_toolchain_tree(tmp_path, versions)
    found = find_toolchain(build=False)
    assert found.kube_apiserver == expected
    assert found.etcd == tmp_path / f"etcd-{versions['ETCD_VERSION']}" / "etcd"


def test_kubebuilder_assets_win_for_the_binaries_envtest_ships(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cache, assets = tmp_path / "cache", tmp_path / "assets"
    _fake_toolchain_tree(cache, read_versions())
    assets.mkdir()
    for name in ENVTEST_BINARIES:
        _executable(assets / name)
    monkeypatch.setenv("MODELCANARY_CACHE", str(cache))
    monkeypatch.setenv("KUBEBUILDER_ASSETS", str(assets))
    found: Toolchain = find_toolchain(build=False)
    assert found.etcd == assets / "etcd"
    assert found.kube_apiserver == assets / "kube-apiserver"
    assert found.kubectl == assets / "kubectl"
    # envtest never ships these, so they still come from the cache.
    assert found.kube_controller_manager.is_relative_to(cache)
    assert found.kwok.is_relative_to(cache)


def _executable(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)


def _fake_toolchain_tree(root: Path, versions: dict[str, str]) -> None:
    kubernetes = root / f"kubernetes-{versions['KUBERNETES_VERSION']}"
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"):
        _executable(kubernetes / name)
    _executable(root / f"etcd-{versions['ETCD_VERSION']}" / "etcd")
    _executable(root / f"kwok-{versions['KWOK_VERSION']}" / "kwok")
    (root / f"kwok-{versions['KWOK_VERSION']}" / "stages").mkdir()
    _executable(root / f"helm-{versions['HELM_VERSION']}" / "helm")
    (root / f"gateway-api-{versions['GATEWAY_API_VERSION']}").mkdir()
    (root / f"prometheus-operator-crds-{versions['PROMETHEUS_OPERATOR_VERSION']}").mkdir()
    assert os.access(kubernetes / "kubectl", os.X_OK)
