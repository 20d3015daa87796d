"""The operator's image on a real node: `tenantdb run` in a locked-down pod, logged in
with the ServiceAccount token the kubelet projects, provisions a Tenant applied with
kubectl; the image's pg_dump is of the server's major version."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tenantdb.devenv import processes
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect, tenant
from tests.node import manifests
from tests.node.fixtures import NodeCluster

pytestmark = [pytest.mark.node, pytest.mark.kube, pytest.mark.postgres]


@pytest.fixture(scope="module")
def operator_pod(node_cluster: NodeCluster, operator_url: str) -> Iterator[Kubectl]:
    """The operator running from its image in a namespace of its own, once Ready."""
    namespace = f"node-{uuid.uuid4().hex[:8]}"
    kubectl = node_cluster.kubectl(namespace)
    kubectl.run("create", "namespace", namespace)
    environment = {
        "DATABASE_URL": operator_url,
        "TENANTDB_CREDENTIALS_KEY": os.environ["TENANTDB_CREDENTIALS_KEY"],
        "TENANTDB_RETRY_DELAY": "2",
    }
    port = processes.free_port()
    kubectl.apply(
        manifests.operator_manifest(namespace, node_cluster.image.name, port, environment)
    )
    kubectl.wait("pod/tenantdb-operator", "condition=Ready", timeout=120)
    yield kubectl
    kubectl.run("delete", "pod", "tenantdb-operator", "--wait=false", check=False)
    kubectl.run("delete", "namespace", namespace, "--wait=false", check=False)


def test_operator_runs_as_its_non_root_user_on_a_read_only_root(operator_pod: Kubectl) -> None:
    pod = operator_pod.get("pod", "tenantdb-operator")
    status = pod["status"]["containerStatuses"][0]
    assert status["ready"] and status["restartCount"] == 0
    exec_ = ("exec", "tenantdb-operator", "--")
    assert operator_pod.run(*exec_, "id", "-u").stdout.strip() == str(manifests.UID)
    refused = operator_pod.run(*exec_, "touch", "/app/written", check=False)
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    assert operator_pod.run(*exec_, "touch", "/tmp/written").returncode == 0  # noqa: S108
    # Nothing but the projected token tells the client where the API server is.
    environment = operator_pod.run(*exec_, "env").stdout
    assert "KUBECONFIG" not in environment
    assert "KUBERNETES_SERVICE_HOST=127.0.100.1" in environment
    log = operator_pod.run("logs", "tenantdb-operator").stdout
    assert "tenantdb operator started" in log


def test_tenant_applied_with_kubectl_becomes_ready_and_its_secret_logs_in(
    operator_pod: Kubectl,
) -> None:
    operator_pod.apply(tenant("acme", isolation="schema", domain="acme.example.com"))
    operator_pod.wait("tenant/acme", "condition=Ready", timeout=120)
    credentials = operator_pod.secret_data("acme-credentials")
    with connect(credentials) as conn:
        row = conn.execute("SELECT current_user").fetchone()
    assert row is not None and row[0] == credentials["username"]


def test_pg_dump_in_the_image_is_of_the_server_major_version(
    node_namespace: Kubectl, node_cluster: NodeCluster, database_url: str
) -> None:
    image = node_cluster.image.name
    node_namespace.apply(manifests.command_pod("pg-dump", image, ["pg_dump", "--version"]))
    node_namespace.wait("pod/pg-dump", "jsonpath={.status.phase}=Succeeded", timeout=120)
    version = node_namespace.run("logs", "pg-dump").stdout.strip()
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
    assert row is not None
    assert version.startswith("pg_dump (PostgreSQL) ")
    assert int(version.split()[-1].split(".")[0]) == row[0] // 10000
