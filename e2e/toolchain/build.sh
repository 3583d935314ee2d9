#!/usr/bin/env bash
# Builds the pinned test control plane from the Go module proxy and caches it
# under ${MODELCANARY_CACHE:-~/.cache/modelcanary}/<component>-<version>/.
#
# Each component has its own cache folder keyed by its version, so a second
# run does nothing and a version bump rebuilds only that component. A folder
# counts as built only once its `.complete` stamp exists, so an interrupted
# build is redone rather than trusted.
#
# KUBEBUILDER_ASSETS (setup-envtest's layout: etcd, kube-apiserver, kubectl)
# is honoured by the Python harness; binaries found there are not built here.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${MODELCANARY_CACHE:-$HOME/.cache/modelcanary}"
# The wrapper modules need Go 1.26. An older local Go (1.21+) fetches that
# toolchain through the module proxy by itself (GOTOOLCHAIN=auto).
# GOFLAGS from the caller (say -p=1 on a busy machine) are kept.
export GOTOOLCHAIN="${GOTOOLCHAIN:-auto}" CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false${GOFLAGS:+ $GOFLAGS}"
command -v go >/dev/null || { echo "Go 1.21+ is needed for the first build of the test control plane" >&2; exit 1; }

log() { printf '[toolchain] %s\n' "$*" >&2; }

have_asset() { [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -x "${KUBEBUILDER_ASSETS}/$1" ]; }

# build_component NAME VERSION CMD... : runs CMD with $out set to a scratch dir,
# then moves it into place atomically.
build_component() {
  local name="$1" version="$2"; shift 2
  local dest="$cache/$name-$version"
  if [ -f "$dest/.complete" ]; then return 0; fi
  log "building $name $version (first run only; cached in $dest)"
  local start=$SECONDS
  mkdir -p "$cache"
  out="$(mktemp -d "$cache/.$name-XXXXXX")"
  "$@"
  chmod 0755 "$out"
  touch "$out/.complete"
  rm -rf "$dest"
  mv "$out" "$dest"
  log "built $name $version in $((SECONDS - start))s"
}

module_time() {  # the publish time of a module version, for buildDate
  go list -m -json "$1" | sed -n 's/.*"Time": "\(.*\)",*/\1/p' | head -1
}

build_kubernetes() {
  local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
  local date; date="$(cd "$here/kubernetes" && module_time "k8s.io/kubernetes@$KUBERNETES_VERSION")"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  local targets=()
  for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    targets+=("k8s.io/kubernetes/cmd/$cmd")
  done
  # One `go build` for all four shares every compiled package between them.
  (cd "$here/kubernetes" && go build -trimpath -ldflags "$ldflags" -o "$out/" "${targets[@]}")
}

build_etcd() {
  (cd "$here/etcd" && go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  GOBIN="$out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
  # The kwok controller needs Stage objects to drive fake Nodes and Pods; these
  # are upstream's own defaults (what kwokctl embeds), taken from the same module.
  local dir; dir="$(go env GOMODCACHE)/sigs.k8s.io/kwok@$KWOK_VERSION/kustomize/stage"
  mkdir -p "$out/stages"
  cp "$dir/node/fast/node-initialize.yaml" \
     "$dir/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml" \
     "$dir/pod/fast/pod-ready.yaml" "$dir/pod/fast/pod-complete.yaml" "$dir/pod/fast/pod-delete.yaml" \
     "$out/stages/"
  chmod 0755 "$out/stages"; chmod 0644 "$out/stages/"*.yaml
}

build_helm() {
  GOBIN="$out" go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
}

build_argo_rollouts() {
  # Only for bench/ (`make argo-rollouts`): `all` leaves it out, so `make test`
  # never pays for it. The ldflags are upstream Makefile's, so `--version` and
  # the build_info metric name the release.
  local pkg=github.com/argoproj/argo-rollouts/utils/version
  local date; date="$(cd "$here/argo-rollouts" && module_time "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION")"
  local ldflags="-s -w -X $pkg.version=${ARGO_ROLLOUTS_VERSION#v} -X $pkg.gitTag=$ARGO_ROLLOUTS_VERSION"
  ldflags+=" -X $pkg.buildDate=$date -X $pkg.gitTreeState=clean"
  (cd "$here/argo-rollouts" && go build -trimpath -ldflags "$ldflags" -o "$out/rollouts-controller" \
    github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
  # The CRDs ship as YAML in the same module: Rollout, AnalysisRun,
  # AnalysisTemplate, ClusterAnalysisTemplate and Experiment (the controller
  # watches all five, so all five are installed).
  local dir; dir="$(cd "$here/argo-rollouts" && go mod download -json "github.com/argoproj/argo-rollouts@$ARGO_ROLLOUTS_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  mkdir -p "$out/crds"
  cp "$dir"/manifests/crds/*-crd.yaml "$out/crds/"
  chmod 0755 "$out/crds"; chmod 0644 "$out/crds/"*.yaml
}

fetch_gateway_api() {
  # The standard channel's CRDs ship as YAML inside the Go module.
  local dir; dir="$(cd "$here/kubernetes" && GOFLAGS=-mod=mod go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  cp "$dir"/config/crd/standard/gateway.networking.k8s.io_*.yaml "$out/"
  # The safe-upgrades ValidatingAdmissionPolicy is not a CRD; tests install CRDs only.
  rm -f "$out"/gateway.networking.k8s.io_vap_*.yaml
  chmod 0644 "$out"/*.yaml
}

fetch_prometheus_operator() {
  # The chart's ServiceMonitor and PrometheusRule are checked against the
  # upstream CRDs, which ship as YAML inside the Go module (nothing is built).
  local dir; dir="$(cd "$here/kubernetes" && GOFLAGS=-mod=mod go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  cp "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml \
     "$dir"/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml "$out/"
  chmod 0644 "$out"/*.yaml
}

what="${1:-all}"
case "$what" in
  all|kubernetes)
    # kube-controller-manager and kube-scheduler are never in KUBEBUILDER_ASSETS,
    # so the Kubernetes build runs even when that is set.
    build_component kubernetes "$KUBERNETES_VERSION" build_kubernetes ;;&
  all|etcd)
    have_asset etcd || build_component etcd "$ETCD_VERSION" build_etcd ;;&
  all|kwok)
    build_component kwok "$KWOK_VERSION" build_kwok ;;&
  all|helm)
    build_component helm "$HELM_VERSION" build_helm ;;&
  all|gateway-api)
    build_component gateway-api "$GATEWAY_API_VERSION" fetch_gateway_api ;;&
  all|prometheus-operator-crds)
    build_component prometheus-operator-crds "$PROMETHEUS_OPERATOR_VERSION" fetch_prometheus_operator ;;
  argo-rollouts)
    # Not part of `all`: only the scale bench runs it.
    build_component argo-rollouts "$ARGO_ROLLOUTS_VERSION" build_argo_rollouts ;;
  kubernetes|etcd|kwok|helm|gateway-api) ;;
  *) echo "usage: $0 [all|kubernetes|etcd|kwok|helm|gateway-api|prometheus-operator-crds|argo-rollouts]" >&2; exit 2 ;;
esac
