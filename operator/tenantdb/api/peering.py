"""The CRDs of kopf's peering objects (group ``kopf.dev``), where replicas meet.

kopf ships no CRD manifests with its package; these are what it reads and
writes: each replica keeps its priority and a keep-alive time under
``status.<identity>``. Generated into ``crds/`` and the chart's ``crds/`` with
tenantdb's own, so ``helm install`` brings them.
"""

from typing import Any

GROUP = "kopf.dev"
VERSION = "v1"
SCOPES = {"ClusterKopfPeering": "Cluster", "KopfPeering": "Namespaced"}
"""A ``ClusterKopfPeering`` serves an operator watching all namespaces; one
``KopfPeering`` per watched namespace serves one restricted to namespaces."""


def definition(kind: str) -> dict[str, Any]:
    """The CRD of one peering kind: free-form status, kept as kopf writes it."""
    plural = f"{kind.lower()}s"
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {
            "group": GROUP,
            "scope": SCOPES[kind],
            "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "properties": {
                                "status": {
                                    "type": "object",
                                    "x-kubernetes-preserve-unknown-fields": True,
                                }
                            },
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


def file_name(kind: str) -> str:
    """Where the CRD of ``kind`` is written, beside tenantdb's."""
    return f"{GROUP}_{kind.lower()}s.yaml"
