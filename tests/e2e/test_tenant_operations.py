"""Day-2 operations on Tenants: suspension, plans, credential rotation, drift repair."""

from __future__ import annotations

import psycopg
import pytest

from tests.e2e.kubectl import Kubectl
from tests.e2e.support import connect, create_as_owner, eventually, tenant

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]


def ready(kubectl: Kubectl, name: str, **spec: object) -> dict[str, str]:
    kubectl.apply(tenant(name, **spec))
    kubectl.wait(f"tenant/{name}", "condition=Ready")
    return kubectl.get("tenant", name)["status"]  # type: ignore[no-any-return]


def test_suspension_blocks_login_and_keeps_data(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    status = ready(kubectl, "sleepy")
    creds = kubectl.secret_data("sleepy-credentials")
    create_as_owner(admin, status, "CREATE TABLE orders (id int)")
    with connect(creds) as conn:
        conn.execute("INSERT INTO orders VALUES (7)")
    session = connect(creds)
    kubectl.run("patch", "tenant", "sleepy", "--type=merge", "-p", '{"spec":{"suspended":true}}')
    kubectl.wait("tenant/sleepy", "jsonpath={.status.phase}=Suspended")
    with pytest.raises(psycopg.OperationalError, match="not permitted to log in"):
        connect(creds).close()
    with pytest.raises(psycopg.OperationalError):
        session.execute("SELECT 1")  # open sessions were terminated
    session.close()
    kubectl.run("patch", "tenant", "sleepy", "--type=merge", "-p", '{"spec":{"suspended":false}}')
    kubectl.wait("tenant/sleepy", "jsonpath={.status.phase}=Ready")
    with connect(creds) as conn:
        assert conn.execute("SELECT id FROM orders").fetchall() == [(7,)]


def test_plan_change_updates_the_role(kubectl: Kubectl, admin: psycopg.Connection) -> None:
    status = ready(kubectl, "grower", plan="free")
    kubectl.run("patch", "tenant", "grower", "--type=merge", "-p", '{"spec":{"plan":"enterprise"}}')
    eventually(
        lambda: (
            admin.execute(
                "SELECT rolconnlimit FROM pg_roles WHERE rolname = %s", (status["role"],)
            ).fetchone()
            == (100,)
        )
    )


def test_rotation_annotation_replaces_the_password(kubectl: Kubectl) -> None:
    ready(kubectl, "rotor")
    old = kubectl.secret_data("rotor-credentials")
    kubectl.run("annotate", "tenant", "rotor", "tenantdb.io/rotate-credentials=2026-11-23")
    kubectl.wait("tenant/rotor", "jsonpath={.status.credentialsRotation}=2026-11-23")
    new = kubectl.secret_data("rotor-credentials")
    assert new["password"] != old["password"]
    assert psycopg.conninfo.conninfo_to_dict(new["uri"])["password"] == new["password"]
    with connect(new) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        connect(old).close()
    assert any(e["reason"] == "CredentialsRotated" for e in kubectl.events("rotor"))


def test_isolation_drift_is_found_repaired_and_reported(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    status = ready(kubectl, "drifter")
    admin.execute(f'ALTER ROLE "{status["role"]}" CREATEDB')
    admin.execute(f'GRANT CREATE ON SCHEMA "{status["schema"]}" TO PUBLIC')
    kubectl.wait(
        "tenant/drifter",
        'jsonpath={.status.conditions[?(@.type=="IsolationVerified")].reason}=Repaired',
        timeout=60,
    )
    role = admin.execute(
        "SELECT rolcreatedb FROM pg_roles WHERE rolname = %s", (status["role"],)
    ).fetchone()
    assert role == (False,)
    public = admin.execute(
        "SELECT has_schema_privilege('public', %s, 'CREATE')", (status["schema"],)
    )
    assert public.fetchone() == (False,)
    drift = [e for e in kubectl.events("drifter") if e["reason"] == "IsolationDrift"]
    assert drift and "CREATEDB" in drift[0]["message"]


def test_drift_only_a_superuser_can_undo_is_reported_not_hidden(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    """The operator runs without superuser: what only a superuser could grant, only a
    superuser can take back. It must say so, not report the tenant as verified."""
    status = ready(kubectl, "elevated")
    admin.execute(f'ALTER ROLE "{status["role"]}" BYPASSRLS')
    admin.execute(f'GRANT pg_read_all_data TO "{status["role"]}"')
    kubectl.wait(
        "tenant/elevated",
        'jsonpath={.status.conditions[?(@.type=="IsolationVerified")].status}=False',
        timeout=60,
    )
    conditions = {c["type"]: c for c in kubectl.get("tenant", "elevated")["status"]["conditions"]}
    message = conditions["IsolationVerified"]["message"]
    assert "not repaired" in message
    assert "BYPASSRLS" in message and "pg_read_all_data" in message
    admin.execute(f'ALTER ROLE "{status["role"]}" NOBYPASSRLS')
    admin.execute(f'REVOKE pg_read_all_data FROM "{status["role"]}"')
    kubectl.wait(
        "tenant/elevated",
        'jsonpath={.status.conditions[?(@.type=="IsolationVerified")].status}=True',
        timeout=60,
    )


def test_version_follows_rollouts_after_ready(kubectl: Kubectl) -> None:
    ready(kubectl, "follower")
    kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Migration\nmetadata:\n  name: add-notes\n"
        "spec:\n  version: 7\n  up: CREATE TABLE notes (id int)\n"
    )
    kubectl.wait("migration/add-notes", "jsonpath={.status.phase}=Succeeded")
    kubectl.wait("tenant/follower", "jsonpath={.status.version}=7", timeout=60)


def test_an_owner_password_a_migration_set_is_found_and_taken_back(
    kubectl: Kubectl, admin: psycopg.Connection
) -> None:
    """Every role may change its own password, so a Migration can give its author a
    login as the owner role; the isolation check finds it and the login is taken back."""
    status = ready(kubectl, "keyholder")
    kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Migration\nmetadata:\n  name: own-key\n"
        "spec:\n  version: 1\n  up: ALTER ROLE CURRENT_USER PASSWORD 'known-to-the-author'\n"
    )
    kubectl.wait("migration/own-key", "jsonpath={.status.phase}=Succeeded")
    creds = kubectl.secret_data("keyholder-credentials")
    url = psycopg.conninfo.make_conninfo(
        creds["uri"], user=status["ownerRole"], password="known-to-the-author"
    )
    with psycopg.connect(url, connect_timeout=10) as conn:  # the window the check closes
        assert conn.execute("SELECT session_user").fetchone() == (status["ownerRole"],)
    kubectl.wait(
        "tenant/keyholder",
        'jsonpath={.status.conditions[?(@.type=="IsolationVerified")].reason}=Repaired',
        timeout=60,
    )
    drift = [e for e in kubectl.events("keyholder") if e["reason"] == "IsolationDrift"]
    assert any("password the operator did not set" in e["message"] for e in drift)
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(url, connect_timeout=10).close()
    kubectl.apply(  # and the operator still runs the tenant's Migrations as its owner
        "apiVersion: tenantdb.io/v1alpha1\nkind: Migration\nmetadata:\n  name: after-key\n"
        "spec:\n  version: 2\n  up: CREATE TABLE after_key (id int)\n"
    )
    kubectl.wait("migration/after-key", "jsonpath={.status.phase}=Succeeded")
