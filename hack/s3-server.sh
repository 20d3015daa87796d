#!/usr/bin/env bash
# Build (once) and locate the S3-compatible server used by `make dev` and the
# tests: versitygw, compiled from its Go module with the machine's Go and
# cached by version outside the work tree.
#
#   hack/s3-server.sh build   build it if missing, print the binary's path
#   hack/s3-server.sh path    print the binary's path (exit 1 if not built)
set -euo pipefail

VERSION="${TENANTDB_S3_SERVER_VERSION:-v1.8.0}"
MODULE="github.com/versity/versitygw/cmd/versitygw"
CACHE_ROOT="${TENANTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantdb}"
BIN_DIR="$CACHE_ROOT/s3/$VERSION"
BINARY="$BIN_DIR/versitygw"

export CGO_ENABLED=0 GOFLAGS=-buildvcs=false GOTOOLCHAIN=local

log() { echo "s3-server: $*" >&2; }

path() {
  [[ -x "$BINARY" ]] || return 1
  echo "$BINARY"
}

build() {
  if path; then return; fi
  command -v go >/dev/null 2>&1 || { log "Go is required for the first build"; exit 1; }
  mkdir -p "$CACHE_ROOT/s3"
  exec 9>"$CACHE_ROOT/s3/.build.lock"
  flock 9
  if path; then return; fi
  local started=$SECONDS partial="$BIN_DIR.partial"
  rm -rf "$partial" && mkdir -p "$partial"
  log "building versitygw $VERSION (first run only)"
  # `go install pkg@version` builds with the module's own go.mod and go.sum.
  GOBIN="$partial" go install -trimpath -ldflags "-s -w" "$MODULE@$VERSION"
  rm -rf "$BIN_DIR" && mv "$partial" "$BIN_DIR"
  log "built in $((SECONDS - started))s into $BIN_DIR"
  echo "$BINARY"
}

case "${1:-build}" in
  build) build ;;
  path) path ;;
  *) echo "usage: $0 [build|path]" >&2; exit 2 ;;
esac
