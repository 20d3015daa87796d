#!/usr/bin/env bash
# Build (once) a local Python base image from Debian's packages, for machines
# that reach no container registry: debootstrap's minbase of the suite this
# machine runs, plus python3 and python3-venv, imported into podman's storage.
# The root filesystem is cached as a tarball, so a new image store only needs
# the (seconds-long) import. The Debian mirror is the one apt on this machine
# is configured with; nothing about it is written into the image.
#
#   hack/base-image.sh         build or import what is missing, print the image name
#   hack/base-image.sh name    print the image name only
set -euo pipefail

SUITE="${TENANTDB_BASE_SUITE:-bookworm}"
PACKAGES="python3,python3-venv,ca-certificates"
CACHE_ROOT="${TENANTDB_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/tenantdb}"
CACHE_DIR="$CACHE_ROOT/images"
# The tag names what the tarball holds, so changing the recipe makes a new one.
RECIPE_HASH="$(printf '%s\n' "$SUITE" "$PACKAGES" "$(sed -n '/^trim()/,/^}/p' "$0")" |
  sha256sum | cut -c1-12)"
IMAGE="localhost/tenantdb-base:$SUITE-$RECIPE_HASH"
TARBALL="$CACHE_DIR/base-$SUITE-$RECIPE_HASH.tar"

log() { echo "base-image: $*" >&2; }

# The first Debian mirror of apt's sources (deb822 .sources or one-line lists)
# serving the plain suite, not security updates.
debian_mirror() {
  local file
  for file in /etc/apt/sources.list.d/*.sources; do
    [[ -f "$file" ]] || continue
    awk -v suite="$SUITE" '
      /^[[:space:]]*$/ { if (uri != "" && ok) { print uri; exit } uri = ""; ok = 0; next }
      /^URIs:/ { uri = $2 }
      /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite) ok = 1 }
      END { if (uri != "" && ok) print uri }' "$file"
  done
  cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | # some may not exist
    awk -v suite="$SUITE" '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^[a-z]+:\/\//) { if ($(i + 1) == suite) print $i; break } }' || true
}

# What an image needs no copy of: documentation, translations and apt's state.
trim() {
  local root="$1"
  rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
    "$root"/usr/share/locale/* "$root"/var/cache/apt/* "$root"/var/lib/apt/lists/* \
    "$root"/var/cache/debconf/*-old "$root"/var/log/* "$root"/tmp/*
  find "$root/usr/lib" -name '__pycache__' -type d -prune -exec rm -rf {} +
}

build_tarball() {
  local mirror root
  mirror="$(debian_mirror | head -n1)"
  [[ -n "$mirror" ]] || { log "no Debian mirror for $SUITE in apt's sources"; exit 1; }
  command -v debootstrap >/dev/null 2>&1 || apt-get install -y --no-install-recommends debootstrap >&2
  root="$(mktemp -d "$CACHE_DIR/rootfs.XXXXXX")"
  trap 'rm -rf "$root"' EXIT
  log "debootstrap $SUITE with $PACKAGES (first run only)"
  debootstrap --variant=minbase --include="$PACKAGES" "$SUITE" "$root" "$mirror" >&2
  trim "$root"
  tar --numeric-owner -C "$root" -cf "$TARBALL.partial" .
  mv "$TARBALL.partial" "$TARBALL"
  rm -rf "$root"
  trap - EXIT
}

build() {
  if podman image exists "$IMAGE" 2>/dev/null; then echo "$IMAGE"; return; fi
  mkdir -p "$CACHE_DIR"
  exec 9>"$CACHE_DIR/.base.lock"
  flock 9
  if podman image exists "$IMAGE" 2>/dev/null; then echo "$IMAGE"; return; fi
  [[ -f "$TARBALL" ]] || build_tarball
  podman import --change 'CMD ["python3"]' "$TARBALL" "$IMAGE" >/dev/null
  log "imported $IMAGE"
  echo "$IMAGE"
}

case "${1:-build}" in
  build) build ;;
  name) echo "$IMAGE" ;;
  *) echo "usage: $0 [build|name]" >&2; exit 2 ;;
esac
