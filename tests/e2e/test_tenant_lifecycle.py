"""A Tenant from `kubectl apply` to deletion, against the real API server,
PostgreSQL and the operator process."""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest

from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect, create_as_owner, eventually, tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_example_tenant_becomes_ready_with_working_credentials(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    kubectl.run("apply", "-f", str(EXAMPLES / "tenant.yaml"))
    kubectl.wait("tenant/acme", "condition=Ready")
    obj = kubectl.get("tenant", "acme")
    status = obj["status"]
    assert status["phase"] == "Ready"
    assert status["observedGeneration"] == obj["metadata"]["generation"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "Provisioned"
    assert ready["observedGeneration"] == obj["metadata"]["generation"]
    assert admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (status["schema"],)
    ).fetchone() == (1,)
    assert admin.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (status["role"],)
    ).fetchone() == (True,)

    creds = kubectl.secret_data(status["credentialsSecret"])
    assert set(creds) == {"host", "port", "database", "username", "password", "uri"}
    create_as_owner(admin, status, "CREATE TABLE leads (id int PRIMARY KEY, email text)")
    with connect(creds) as conn:
        conn.execute("INSERT INTO leads VALUES (1, 'a@acme.example.com')")
        assert conn.execute(f'SELECT count(*) FROM "{status["schema"]}".leads').fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE own_table (v int)")  # DDL is the owner role's job

    secret = kubectl.get("secret", status["credentialsSecret"])
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["uid"]) == ("Tenant", obj["metadata"]["uid"])
    assert any(e["reason"] == "Provisioned" for e in kubectl.events("acme"))
    columns = kubectl.run("get", "tenants").stdout.splitlines()[0].split()
    assert columns[:4] == ["NAME", "PHASE", "ISOLATION", "VERSION"]
    assert "Ready" in kubectl.run("get", "tenants").stdout


def test_tenants_cannot_reach_each_other(kubectl: Kubectl, admin: psycopg.Connection) -> None:
    kubectl.apply(tenant("red", domain="red.example.com"))
    kubectl.apply(tenant("blue", domain="blue.example.com"))
    kubectl.wait("tenant/red", "condition=Ready")
    kubectl.wait("tenant/blue", "condition=Ready")
    blue = kubectl.get("tenant", "blue")["status"]
    blue_schema = blue["schema"]
    create_as_owner(admin, blue, "CREATE TABLE private (v text)")
    with connect(kubectl.secret_data("blue-credentials")) as conn:
        conn.execute("INSERT INTO private VALUES ('blue only')")
    with connect(kubectl.secret_data("red-credentials")) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'SELECT * FROM "{blue_schema}".private')
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(f'CREATE TABLE "{blue_schema}".planted (v text)')


def test_reapplying_is_idempotent(kubectl: Kubectl) -> None:
    manifest = tenant("steady", plan="free")
    kubectl.apply(manifest)
    kubectl.wait("tenant/steady", "condition=Ready")
    before = kubectl.secret_data("steady-credentials")
    transition = kubectl.get("tenant", "steady")["status"]["conditions"][0]["lastTransitionTime"]
    assert "unchanged" in kubectl.apply(manifest).stdout
    kubectl.run("annotate", "tenant", "steady", "touch=1")  # a metadata change re-runs the handler

    def touch_handled() -> bool:
        bookkeeping = kubectl.get("tenant", "steady")["status"].get("operator", {})
        return '"touch"' in bookkeeping.get("lastHandledConfiguration", "")

    eventually(touch_handled)
    kubectl.wait("tenant/steady", "condition=Ready")
    assert kubectl.secret_data("steady-credentials") == before
    after = kubectl.get("tenant", "steady")["status"]["conditions"][0]["lastTransitionTime"]
    assert after == transition
    with connect(before) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_domain_conflict_is_reported_and_creates_nothing(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    kubectl.apply(tenant("first", domain="taken.example.com"))
    kubectl.wait("tenant/first", "condition=Ready")
    kubectl.apply(tenant("second", domain="taken.example.com"))
    kubectl.wait("tenant/second", "jsonpath={.status.conditions[0].reason}=DomainConflict")
    ready = kubectl.get("tenant", "second")["status"]["conditions"][0]
    assert ready["status"] == "False"
    assert "taken.example.com" in ready["message"] and "/first" in ready["message"]
    assert kubectl.get("tenant", "second")["status"]["phase"] == "Failed"
    assert any(
        e["reason"] == "DomainConflict" and e["type"] == "Warning" for e in kubectl.events("second")
    )
    uid = kubectl.get("tenant", "second")["metadata"]["uid"]
    assert admin.execute(
        "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s", (uid,)
    ).fetchone() == (0,)
    assert kubectl.run("get", "secret", "second-credentials", check=False).returncode != 0
    # Fixing the spec recovers.
    kubectl.run(
        "patch",
        "tenant",
        "second",
        "--type=merge",
        "-p",
        '{"spec":{"domain":"second.example.com"}}',
    )
    kubectl.wait("tenant/second", "condition=Ready")


def test_unknown_plan_is_reported(kubectl: Kubectl) -> None:
    kubectl.apply(tenant("planless", plan="platinum"))
    kubectl.wait("tenant/planless", "jsonpath={.status.conditions[0].reason}=UnknownPlan")
    assert "platinum" in kubectl.get("tenant", "planless")["status"]["conditions"][0]["message"]


def test_delete_policy_retain_keeps_schema_and_roles(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    kubectl.apply(tenant("keeper", deletionPolicy="Retain"))
    kubectl.wait("tenant/keeper", "condition=Ready")
    status = kubectl.get("tenant", "keeper")["status"]
    create_as_owner(admin, status, "CREATE TABLE invoices (id int)")
    with connect(kubectl.secret_data("keeper-credentials")) as conn:
        conn.execute("INSERT INTO invoices VALUES (42)")
    kubectl.run("delete", "tenant", "keeper", "--timeout=60s")
    assert admin.execute(f'SELECT id FROM "{status["schema"]}".invoices').fetchone() == (42,)
    assert admin.execute(
        "SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (status["role"],)
    ).fetchone() == (False,)
    eventually(
        lambda: kubectl.run("get", "secret", "keeper-credentials", check=False).returncode != 0
    )


def test_delete_policy_delete_drops_everything(kubectl: Kubectl, admin: psycopg.Connection) -> None:
    kubectl.run("apply", "-f", str(EXAMPLES / "tenant-delete.yaml"))
    kubectl.wait("tenant/globex", "condition=Ready")
    obj = kubectl.get("tenant", "globex")
    status = obj["status"]
    kubectl.run("delete", "tenant", "globex", "--timeout=60s")
    assert admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname LIKE %s", (f"{status['schema']}%",)
    ).fetchone() == (0,)
    assert admin.execute(
        "SELECT count(*) FROM pg_namespace WHERE nspname = %s", (status["schema"],)
    ).fetchone() == (0,)
    assert admin.execute(
        "SELECT count(*) FROM tenantdb.tenants WHERE uid = %s", (obj["metadata"]["uid"],)
    ).fetchone() == (0,)
    eventually(
        lambda: kubectl.run("get", "secret", "globex-credentials", check=False).returncode != 0
    )


def test_the_largest_spec_and_large_annotations_keep_kopfs_bookkeeping_small(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    """Every metadata entry at its bound, and 200 KB of the user's own annotations:
    status is written, the operator's bookkeeping stays small, deletion finishes."""
    metadata = {f"key-{i:02d}-{'k' * 56}": "v" * 256 for i in range(64)}
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "roomy", "annotations": {"example.com/notes": "n" * 200_000}},
        "spec": {"deletionPolicy": "Delete", "metadata": metadata},
    }
    kubectl.run("create", "-f", "-", stdin=json.dumps(body))  # apply would copy it again
    kubectl.wait("tenant/roomy", "condition=Ready")
    obj = kubectl.get("tenant", "roomy")
    ours = {k: v for k, v in obj["metadata"]["annotations"].items() if "tenantdb.io" in k}
    assert not ours, ours  # kopf's bookkeeping is in status, written with it
    bookkeeping = obj["status"]["operator"]
    assert "lastHandledConfiguration" in bookkeeping
    assert sum(len(k) + len(v) for k, v in bookkeeping.items()) < 16_384, bookkeeping
    stored = admin.execute(
        "SELECT metadata FROM tenantdb.tenants WHERE uid = %s", (obj["metadata"]["uid"],)
    ).fetchone()
    assert stored == (metadata,)
    kubectl.run("patch", "tenant", "roomy", "--type=merge", "-p", '{"spec":{"plan":"free"}}')
    kubectl.wait("tenant/roomy", "jsonpath={.status.observedGeneration}=2")
    kubectl.run("delete", "tenant", "roomy", "--timeout=60s")
