#!/usr/bin/env bash
# Quick start for users with Docker: a kind cluster running the operator from
# this tree, installed with the Helm chart (the same chart the real-node test
# suite installs and exercises; this script itself is not run by the tests).
#
#   hack/kind-up.sh DATABASE_URL      or      DATABASE_URL=... hack/kind-up.sh
#
# DATABASE_URL: the operator's role on your PostgreSQL (README: "The operator's
# database role"), reachable from inside the cluster's pods: not `localhost`,
# but for a server on the Docker host `host.docker.internal` (Docker Desktop)
# or the Docker bridge's gateway address (Linux, usually 172.17.0.1).
#
# Needs docker, kind, kubectl and helm. Environment: KIND_CLUSTER (default
# tenantdb), NAMESPACE (default tenantdb-system), IMAGE (default tenantdb:dev).
# Run it again after a change: it rebuilds, reloads and upgrades the release.
# The database Secret's credentials key is generated once and kept after.
set -euo pipefail
cd "$(dirname "$0")/.."

DATABASE_URL="${1:-${DATABASE_URL:-}}"
CLUSTER="${KIND_CLUSTER:-tenantdb}"
NAMESPACE="${NAMESPACE:-tenantdb-system}"
IMAGE="${IMAGE:-tenantdb:dev}"
SECRET=tenantdb-database

log() { echo "kind-up: $*" >&2; }

if [[ -z "$DATABASE_URL" ]]; then
  sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2
  exit 2
fi
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { log "$tool is not installed"; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  log "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER"
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

log "building $IMAGE"
docker build -t "$IMAGE" .
log "loading $IMAGE into $CLUSTER"
kind load docker-image "$IMAGE" --name "$CLUSTER"

kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
if kubectl -n "$NAMESPACE" get secret "$SECRET" >/dev/null 2>&1; then
  encoded="$(printf '%s' "$DATABASE_URL" | base64 | tr -d '\n')"
  kubectl -n "$NAMESPACE" patch secret "$SECRET" --type=merge \
    -p "{\"data\":{\"DATABASE_URL\":\"$encoded\"}}" >/dev/null
else
  kubectl -n "$NAMESPACE" create secret generic "$SECRET" \
    --from-literal=DATABASE_URL="$DATABASE_URL" \
    --from-literal=TENANTDB_CREDENTIALS_KEY="$(head -c 32 /dev/urandom | base64)" >/dev/null
fi

log "installing the chart"
helm upgrade --install tenantdb charts/tenantdb --namespace "$NAMESPACE" \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" \
  --set image.pullPolicy=Never \
  --set database.existingSecret="$SECRET" \
  --set environment=development
# A changed tree keeps the tag: restart so the pods run the image just loaded.
kubectl -n "$NAMESPACE" rollout restart deployment/tenantdb >/dev/null
if ! kubectl -n "$NAMESPACE" rollout status deployment/tenantdb --timeout=180s; then
  log "not Ready; the operator says why:"
  kubectl -n "$NAMESPACE" logs deployment/tenantdb --tail=20 >&2 || true
  exit 1
fi
log "ready: kubectl apply -f examples/tenant.yaml && kubectl wait --for=condition=Ready tenant/acme"
