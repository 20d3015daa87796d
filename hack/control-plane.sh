#!/usr/bin/env bash
# Build (once) and locate the local Kubernetes control plane used by
# `make dev` and the tests: etcd, kube-apiserver and kube-controller-manager
# (plus kubectl when the machine has none), compiled from Go modules and
# cached by version outside the work tree.
#
#   hack/control-plane.sh build   build what is missing, print the bin dir
#   hack/control-plane.sh path    print the bin dir (exit 1 if incomplete)
#
# KUBEBUILDER_ASSETS, when it holds etcd and kube-apiserver, is used as is.
set -euo pipefail

K8S_VERSION="${TENANTDB_K8S_VERSION:-v1.36.3}"
ETCD_VERSION="${TENANTDB_ETCD_VERSION:-v3.6.16}"
CACHE_ROOT="${TENANTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantdb}"
BIN_DIR="$CACHE_ROOT/k8s/$K8S_VERSION-etcd$ETCD_VERSION"
WORK_DIR="$CACHE_ROOT/k8s/build"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { echo "control-plane: $*" >&2; }

required_binaries() {
  echo etcd kube-apiserver kube-controller-manager
  command -v kubectl >/dev/null 2>&1 || echo kubectl
}

has_all() {
  local dir="$1" bin
  shift
  for bin in "$@"; do [[ -x "$dir/$bin" ]] || return 1; done
}

# envtest's asset directories hold etcd and kube-apiserver (no controller-manager).
assets_dir() {
  if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_all "$KUBEBUILDER_ASSETS" etcd kube-apiserver; then
    echo "$KUBEBUILDER_ASSETS"
  elif has_all "$BIN_DIR" $(required_binaries); then
    echo "$BIN_DIR"
  else
    return 1
  fi
}

# Every `k8s.io/<name> => ./staging/...` line of the served go.mod becomes a
# replace to the published tag of that staging module (v1.Y.Z -> v0.Y.Z).
staging_replaces() {
  local mod_file="$1" staging_version="v0.${K8S_VERSION#v1.}"
  sed -nE 's#^[[:space:]]*(k8s\.io/[a-z0-9-]+) => \./staging/.*#\1#p' "$mod_file" |
    while read -r module; do echo "replace $module => $module $staging_version"; done
}

build_kubernetes() {
  local dir="$WORK_DIR/kubernetes-$K8S_VERSION" mod_file minor="${K8S_VERSION#v1.}"
  minor="${minor%%.*}"
  mkdir -p "$dir"
  mod_file="$(cd "$dir" && go mod download -json "k8s.io/kubernetes@$K8S_VERSION" |
    sed -nE 's/^[[:space:]]*"GoMod": "(.*)",?$/\1/p')"
  {
    echo "module tenantdb.dev/controlplane"
    echo
    echo "go $(sed -nE 's/^go ([0-9.]+)$/\1/p' "$mod_file")"
    echo
    echo "require k8s.io/kubernetes $K8S_VERSION"
    echo
    staging_replaces "$mod_file"
  } >"$dir/go.mod"
  local packages=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager)
  command -v kubectl >/dev/null 2>&1 || packages+=(k8s.io/kubernetes/cmd/kubectl)
  local ldflags=""
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building ${packages[*]##*/} $K8S_VERSION (first run only; takes a while)"
  (cd "$dir" && go get "${packages[@]/%/@$K8S_VERSION}" >/dev/null 2>&1 || (cd "$dir" && go get "${packages[@]}"))
  (cd "$dir" && go build -trimpath -ldflags "-s -w$ldflags" -o "$BIN_DIR.partial/" "${packages[@]}")
}

build_etcd() {
  local dir="$WORK_DIR/etcd-$ETCD_VERSION"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command etcd is the upstream etcd server, built from its Go module.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
GO
  if [[ ! -f "$dir/go.mod" ]]; then
    (cd "$dir" && go mod init tenantdb.dev/etcd >/dev/null 2>&1)
  fi
  log "building etcd $ETCD_VERSION"
  (cd "$dir" && go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null && go mod tidy >/dev/null)
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR.partial/etcd" .)
}

build() {
  if dir="$(assets_dir)"; then echo "$dir"; return; fi
  command -v go >/dev/null 2>&1 || { log "Go is required for the first build (or set KUBEBUILDER_ASSETS / KUBECONFIG)"; exit 1; }
  mkdir -p "$CACHE_ROOT/k8s"
  exec 9>"$CACHE_ROOT/k8s/.build.lock"
  flock 9
  if dir="$(assets_dir)"; then echo "$dir"; return; fi
  rm -rf "$BIN_DIR.partial" && mkdir -p "$BIN_DIR.partial"
  local started=$SECONDS
  build_etcd
  build_kubernetes
  rm -rf "$BIN_DIR" && mv "$BIN_DIR.partial" "$BIN_DIR"
  log "built in $((SECONDS - started))s into $BIN_DIR"
  echo "$BIN_DIR"
}

case "${1:-build}" in
  build) build ;;
  path) assets_dir ;;
  *) echo "usage: $0 [build|path]" >&2; exit 2 ;;
esac
