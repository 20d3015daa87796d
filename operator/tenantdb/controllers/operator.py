"""Running the operator: load every handler module, then hand over to kopf."""

import kopf

from tenantdb.controllers import startup, tenants

HANDLER_MODULES = (startup, tenants)
"""Importing these registers their handlers with kopf's default registry."""


def run(namespace: str | None, liveness_endpoint: str | None = None) -> None:
    """Run kopf until SIGINT/SIGTERM: one namespace, or all of them."""
    kopf.run(
        standalone=True,
        clusterwide=namespace is None,
        namespaces=[namespace] if namespace else [],
        liveness_endpoint=liveness_endpoint,
    )
