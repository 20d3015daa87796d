"""Namespace users with the real RBAC: a ServiceAccount, a Role, a RoleBinding, a token.

What a platform admin grants a team that may use tenantdb in one
namespace: every verb on ``tenants``, ``migrations``, ``backups`` and
``backupschedules`` of ``tenantdb.io``, reading ``secrets`` and ``events``,
and creating ``secrets`` (backup keys, S3 credentials), in that namespace
only. The token comes from the API server's TokenRequest endpoint (``kubectl
create token``), signed with the control plane's service-account key; the
kubeconfig carries nothing but the server, its CA and that token, so every
request is authorised as ``system:serviceaccount:<namespace>:<name>``.

Only the admin kubeconfig creates namespaces and RBAC objects; the tests
act with ``NamespaceUser.kubectl``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.e2e.kubectl import Kubectl

ACCOUNT = "tenantdb-user"
TOKEN_SECONDS = 3600


def role_manifest(namespace: str) -> str:
    """The ServiceAccount, Role and RoleBinding of one namespace's user, as JSON."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": ACCOUNT, "namespace": namespace},
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": ACCOUNT, "namespace": namespace},
            "rules": [
                {
                    "apiGroups": ["tenantdb.io"],
                    "resources": ["tenants", "migrations", "backups", "backupschedules"],
                    "verbs": ["*"],
                },
                {
                    "apiGroups": [""],
                    "resources": ["secrets", "events"],
                    "verbs": ["get", "list", "watch"],
                },
                {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                {
                    "apiGroups": ["events.k8s.io"],
                    "resources": ["events"],
                    "verbs": ["get", "list", "watch"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": ACCOUNT, "namespace": namespace},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": ACCOUNT,
            },
            "subjects": [{"kind": "ServiceAccount", "name": ACCOUNT, "namespace": namespace}],
        },
    ]
    return json.dumps({"apiVersion": "v1", "kind": "List", "items": items})


def token_kubeconfig(admin_kubeconfig: Path, token: str, path: Path) -> Path:
    """A kubeconfig of the same server and CA as the admin's, authenticating with ``token``."""
    admin = json.loads(admin_kubeconfig.read_text())
    cluster = admin["clusters"][0]
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [cluster],
        "users": [{"name": ACCOUNT, "user": {"token": token}}],
        "contexts": [{"name": ACCOUNT, "context": {"cluster": cluster["name"], "user": ACCOUNT}}],
        "current-context": ACCOUNT,
    }
    path.write_text(json.dumps(document))
    path.chmod(0o600)
    return path


@dataclass(frozen=True)
class NamespaceUser:
    """One namespace and its user: ``kubectl`` acts with the user's token only."""

    namespace: str
    kubectl: Kubectl
    admin: Kubectl
    """kubectl with the admin kubeconfig in the same namespace (set-up and checks only)."""

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{ACCOUNT}"

    def elsewhere(self, namespace: str) -> Kubectl:
        """The same token aimed at another namespace."""
        return Kubectl(self.kubectl.kubeconfig, namespace)


def create_user(admin_kubeconfig: Path, namespace: str, directory: Path) -> NamespaceUser:
    """The namespace, its RBAC objects, and a kubeconfig with a freshly requested token."""
    admin = Kubectl(admin_kubeconfig, namespace)
    admin.run("create", "namespace", namespace)
    admin.apply(role_manifest(namespace))
    token = admin.run("create", "token", ACCOUNT, f"--duration={TOKEN_SECONDS}s").stdout.strip()
    assert token.count(".") == 2, "a JWT from the TokenRequest API"
    config = token_kubeconfig(admin_kubeconfig, token, directory / f"{namespace}.kubeconfig")
    return NamespaceUser(namespace, Kubectl(config, namespace), admin)


def delete_user(user: NamespaceUser) -> None:
    user.admin.run("delete", "namespace", user.namespace, "--wait=false", check=False)
