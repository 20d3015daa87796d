#!/usr/bin/env bash
# Build (once) and locate the Helm binary the chart tests use, compiled from
# the helm.sh/helm/v3 Go module with the machine's Go and cached by version
# outside the work tree.
#
#   hack/helm.sh build   build it when missing, print the binary's path
#   hack/helm.sh path    print the binary's path (exit 1 if not built)
set -euo pipefail

HELM_VERSION="${TENANTDB_HELM_VERSION:-v3.22.0}"
CACHE_ROOT="${TENANTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantdb}"
BIN_DIR="$CACHE_ROOT/helm/$HELM_VERSION"
WORK_DIR="$CACHE_ROOT/helm/build/helm-$HELM_VERSION"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { echo "helm: $*" >&2; }

built() { [[ -x "$BIN_DIR/helm" ]]; }

# A throwaway module requiring helm at the wanted version: `go get` then
# resolves helm's own go.mod (its replaces are none), and `go build` compiles
# cmd/helm with the version stamped the way helm's Makefile stamps it.
build_helm() {
  mkdir -p "$WORK_DIR"
  if [[ ! -f "$WORK_DIR/go.mod" ]]; then
    (cd "$WORK_DIR" && go mod init tenantdb.dev/helm >/dev/null 2>&1)
  fi
  log "building helm $HELM_VERSION (first run only; takes a few minutes)"
  (cd "$WORK_DIR" && go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" >/dev/null 2>&1 ||
    (cd "$WORK_DIR" && go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"))
  local ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ldflags+=" -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  # The Kubernetes version `helm template` and `helm lint` assume without a
  # cluster: one past client-go's v0.Y, as helm's Makefile computes it.
  local client_go major minor pkg
  client_go="$(cd "$WORK_DIR" && go list -m -f '{{.Version}}' k8s.io/client-go)"
  client_go="${client_go#v}"
  major=$((${client_go%%.*} + 1))
  minor="${client_go#*.}"
  minor="${minor%%.*}"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ldflags+=" -X $pkg.k8sVersionMajor=$major -X $pkg.k8sVersionMinor=$minor"
  done
  (cd "$WORK_DIR" && go build -trimpath -ldflags "$ldflags" -o "$BIN_DIR.partial/helm" helm.sh/helm/v3/cmd/helm)
}

build() {
  if built; then echo "$BIN_DIR/helm"; return; fi
  command -v go >/dev/null 2>&1 || { log "Go is required for the first build"; exit 1; }
  mkdir -p "$CACHE_ROOT/helm"
  exec 9>"$CACHE_ROOT/helm/.build.lock"
  flock 9
  if built; then echo "$BIN_DIR/helm"; return; fi
  rm -rf "$BIN_DIR.partial" && mkdir -p "$BIN_DIR.partial"
  local started=$SECONDS
  build_helm
  rm -rf "$BIN_DIR" && mv "$BIN_DIR.partial" "$BIN_DIR"
  log "built in $((SECONDS - started))s into $BIN_DIR"
  echo "$BIN_DIR/helm"
}

case "${1:-build}" in
  build) build ;;
  path) built && echo "$BIN_DIR/helm" ;;
  *) echo "usage: $0 [build|path]" >&2; exit 2 ;;
esac
