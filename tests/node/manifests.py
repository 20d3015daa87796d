"""The operator as a pod on the node: its RBAC, its Secret and its Pod, as JSON manifests.

The ClusterRole is what the operator needs when it watches every namespace:
kopf lists CustomResourceDefinitions and namespaces, patches the custom
objects (finalizers, its annotations) and their status, and posts events;
the operator itself reads and writes Secrets (tenants' credentials).
"""

from __future__ import annotations

import json
from typing import Any

ACCOUNT = "tenantdb-operator"
UID = 10001
"""The image's numeric user (Dockerfile)."""

RULES: list[dict[str, Any]] = [
    {
        "apiGroups": ["apiextensions.k8s.io"],
        "resources": ["customresourcedefinitions"],
        "verbs": ["get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "list", "watch"]},
    {
        "apiGroups": ["tenantdb.io"],
        "resources": ["tenants", "migrations", "backups", "backupschedules"],
        "verbs": ["get", "list", "watch", "patch", "update", "create", "delete"],
    },
    {
        "apiGroups": ["tenantdb.io"],
        "resources": [
            "tenants/status",
            "migrations/status",
            "backups/status",
            "backupschedules/status",
        ],
        "verbs": ["get", "patch", "update"],
    },
    {
        "apiGroups": [""],
        "resources": ["secrets"],
        "verbs": ["get", "list", "watch", "create", "patch", "update"],
    },
    {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
    {"apiGroups": ["events.k8s.io"], "resources": ["events"], "verbs": ["create", "patch"]},
]


def operator_manifest(namespace: str, image: str, port: int, environment: dict[str, str]) -> str:
    """ServiceAccount, ClusterRole(Binding), Secret and Pod running ``tenantdb run``.

    ``environment`` goes into the Secret and from there into the container's
    environment; ``port`` is kopf's liveness endpoint on the host's loopback.
    """
    name = f"{ACCOUNT}-{namespace}"
    items = [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": ACCOUNT}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": RULES,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        },
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "tenantdb-operator-env"},
            "stringData": environment,
        },
        operator_pod(image, port),
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def operator_pod(image: str, port: int) -> dict[str, Any]:
    """The Pod: host network, locked down, the liveness endpoint as its probes."""
    probe = {"httpGet": {"path": "/healthz", "port": port}, "periodSeconds": 2}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "tenantdb-operator", "labels": {"app": "tenantdb-operator"}},
        "spec": {
            "serviceAccountName": ACCOUNT,
            "hostNetwork": True,
            "restartPolicy": "Always",
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "operator",
                    "image": image,
                    "imagePullPolicy": "Never",
                    "args": ["--liveness", f"http://127.0.0.1:{port}/healthz"],
                    "envFrom": [{"secretRef": {"name": "tenantdb-operator-env"}}],
                    "ports": [{"name": "liveness", "containerPort": port}],
                    "readinessProbe": probe,
                    "livenessProbe": {**probe, "initialDelaySeconds": 30},
                    "securityContext": {
                        "readOnlyRootFilesystem": True,
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],  # noqa: S108
                }
            ],
            "volumes": [{"name": "tmp", "emptyDir": {}}],
        },
    }


def command_pod(name: str, image: str, command: list[str]) -> str:
    """A Pod that runs ``command`` once in the image, as locked down as the operator."""
    pod = operator_pod(image, 0)
    container = pod["spec"]["containers"][0]
    for key in ("args", "envFrom", "ports", "readinessProbe", "livenessProbe"):
        del container[key]
    container["command"] = command
    pod["metadata"] = {"name": name}
    pod["spec"]["restartPolicy"] = "Never"
    del pod["spec"]["serviceAccountName"]
    return json.dumps(pod)
