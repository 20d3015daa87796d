"""A namespace user against the servers: it cannot declare one, read one's credentials,
or move its tenant by writing ``status.server``; the placement directory decides."""

from __future__ import annotations

import json

import pytest

from tests.security.conftest import Boundary

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

OWN_NAMESPACE = "default"
"""Where the session operator (no ``POD_NAMESPACE``) reads DatabaseServer Secrets."""
HOSTILE_SERVER = """apiVersion: tenantdb.io/v1alpha1
kind: DatabaseServer
metadata:
  name: attacker-owned
spec:
  connection:
    secretName: attacker-url
"""


def test_a_namespace_user_cannot_declare_a_server_or_read_a_servers_secret(
    boundary: Boundary,
) -> None:
    kubectl = boundary.a.kubectl
    own_namespace = boundary.a.elsewhere(OWN_NAMESPACE)
    attempts = [
        (kubectl, ("create", "-f", "-")),
        (kubectl, ("get", "databaseservers")),
        (own_namespace, ("get", "secrets")),
        (own_namespace, ("create", "secret", "generic", "attacker-url", "--from-literal=a=b")),
    ]
    for client, args in attempts:
        result = client.run(*args, stdin=HOSTILE_SERVER, check=False)
        assert result.returncode != 0 and "forbidden" in result.stderr.lower(), args
    assert boundary.a.admin.run("get", "databaseserver", "attacker-owned", check=False).returncode


def test_a_written_status_server_does_not_move_the_tenant(boundary: Boundary) -> None:
    user = boundary.a
    forged = json.dumps({"status": {"server": "attacker-owned"}})
    refused = user.kubectl.run(
        "patch", "tenant", "atk", "--subresource=status", "--type=merge", "-p", forged, check=False
    )
    assert refused.returncode != 0 and "forbidden" in refused.stderr.lower()
    # Even a status written with more rights than the user has is only a mirror.
    user.admin.run("patch", "tenant", "atk", "--subresource=status", "--type=merge", "-p", forged)
    user.kubectl.run("annotate", "tenant", "atk", "--overwrite", "example.com/nudge=1")
    user.kubectl.wait("tenant/atk", "jsonpath={.status.server}=default", timeout=60)
    assert user.kubectl.get("tenant", "atk")["status"]["phase"] == "Ready"
