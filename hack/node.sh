#!/usr/bin/env bash
# Build (once) and locate what a real single Kubernetes node needs beside the
# control plane of hack/control-plane.sh: kubelet and kube-scheduler (from the
# same Kubernetes version), crictl, and a pause binary for the sandbox image,
# all compiled from Go modules and cached by version outside the work tree.
# The Debian packages a node runs on (containerd, runc, the CNI plugins) are
# installed when missing.
#
#   hack/node.sh build      build what is missing, print the bin dir
#   hack/node.sh path       print the bin dir (exit 1 if incomplete)
#   hack/node.sh packages   install the missing Debian packages (needs root)
set -euo pipefail

K8S_VERSION="${TENANTDB_K8S_VERSION:-v1.36.3}"
CRICTL_VERSION="${TENANTDB_CRICTL_VERSION:-v1.37.0}"
CACHE_ROOT="${TENANTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantdb}"
BIN_DIR="$CACHE_ROOT/k8s/node-$K8S_VERSION-crictl$CRICTL_VERSION"
WORK_DIR="$CACHE_ROOT/k8s/build"
CONTROL_PLANE_MODULE="$WORK_DIR/kubernetes-$K8S_VERSION"
BINARIES=(kubelet kube-scheduler crictl pause)
PACKAGES=(containerd runc containernetworking-plugins)

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { echo "node: $*" >&2; }

complete() {
  local bin
  for bin in "${BINARIES[@]}"; do [[ -x "$BIN_DIR/$bin" ]] || return 1; done
  echo "$BIN_DIR"
}

missing_packages() {
  local package
  for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}\n' "$package" 2>/dev/null | grep -q '^install ok installed$' ||
      echo "$package"
  done
}

install_packages() {
  local missing
  missing="$(missing_packages)"
  [[ -z "$missing" ]] && return
  [[ "$(id -u)" == 0 ]] || { log "missing Debian packages (install as root): $missing"; exit 1; }
  log "installing $missing"
  # shellcheck disable=SC2086 # one package a word
  apt-get install -y --no-install-recommends $missing >&2 ||
    { apt-get update >&2 && apt-get install -y --no-install-recommends $missing >&2; }
}

# The kubelet and the scheduler live in k8s.io/kubernetes, like the API server:
# a module of their own starts from the control plane's go.mod and go.sum, so
# the modules it downloaded (and Go's build cache) are reused.
build_kubernetes() {
  local dir="$WORK_DIR/node-$K8S_VERSION" minor="${K8S_VERSION#v1.}" ldflags="" pkg
  minor="${minor%%.*}"
  [[ -f "$CONTROL_PLANE_MODULE/go.mod" ]] || bash "$(dirname "$0")/control-plane.sh" build >/dev/null
  mkdir -p "$dir"
  cp "$CONTROL_PLANE_MODULE/go.mod" "$CONTROL_PLANE_MODULE/go.sum" "$dir/"
  sed -i 's#^module .*#module tenantdb.dev/node#' "$dir/go.mod"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  done
  log "building kubelet and kube-scheduler $K8S_VERSION (first run only)"
  (cd "$dir" && go get "k8s.io/kubernetes/cmd/kubelet@$K8S_VERSION" >/dev/null 2>&1)
  (cd "$dir" && go build -trimpath -ldflags "-s -w$ldflags" -o "$BIN_DIR.partial/" \
    k8s.io/kubernetes/cmd/kubelet k8s.io/kubernetes/cmd/kube-scheduler)
}

build_crictl() {
  log "building crictl $CRICTL_VERSION"
  GOBIN="$BIN_DIR.partial" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION"
}

# The sandbox ("pause") container's only process: it holds the pod's
# namespaces, reaps re-parented children and exits on SIGINT or SIGTERM.
build_pause() {
  local dir="$WORK_DIR/pause"
  mkdir -p "$dir"
  cat >"$dir/main.go" <<'GO'
// Command pause idles as a pod sandbox's first process, reaping children.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for sig := range signals {
		if sig != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			pid, err := syscall.Wait4(-1, nil, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
GO
  [[ -f "$dir/go.mod" ]] || (cd "$dir" && go mod init tenantdb.dev/pause >/dev/null 2>&1)
  (cd "$dir" && go build -trimpath -ldflags "-s -w" -o "$BIN_DIR.partial/pause" .)
}

build() {
  install_packages
  if complete; then return; fi
  command -v go >/dev/null 2>&1 || { log "Go is required for the first build"; exit 1; }
  mkdir -p "$CACHE_ROOT/k8s"
  exec 9>"$CACHE_ROOT/k8s/.node-build.lock"
  flock 9
  if complete; then return; fi
  rm -rf "$BIN_DIR.partial" && mkdir -p "$BIN_DIR.partial"
  local started=$SECONDS
  build_pause
  build_crictl
  build_kubernetes
  rm -rf "$BIN_DIR" && mv "$BIN_DIR.partial" "$BIN_DIR"
  log "built in $((SECONDS - started))s into $BIN_DIR"
  echo "$BIN_DIR"
}

case "${1:-build}" in
  build) build ;;
  path) complete ;;
  packages) install_packages ;;
  *) echo "usage: $0 [build|path|packages]" >&2; exit 2 ;;
esac
