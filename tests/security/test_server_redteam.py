"""Attacks on the servers: a server that already holds a control schema someone else
made, a server Secret whose value is not a URL (libpq quotes it, password and all),
and a domain claimed again by a tenant placed on another server.

The second server is a real PostgreSQL server started here, declared as a
DatabaseServer by the platform admin (the only one who may).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import psycopg
import pytest

from tenantdb.devenv import operator_process, postgres
from tests.e2e.databaseservers import OWN_NAMESPACE, declared
from tests.e2e.kubectl import Kubectl
from tests.e2e.support import eventually
from tests.security.conftest import Boundary

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]

SQUATTER = """
CREATE SCHEMA tenantdb;
GRANT ALL ON SCHEMA tenantdb TO PUBLIC;
CREATE TABLE tenantdb.tripwire (who text NOT NULL, via text NOT NULL);
GRANT INSERT ON tenantdb.tripwire TO PUBLIC;
CREATE TABLE tenantdb.control_version (version int NOT NULL);
GRANT ALL ON tenantdb.control_version TO PUBLIC;
CREATE FUNCTION tenantdb.snare() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO tenantdb.tripwire VALUES (current_user, TG_TABLE_NAME);
    RETURN NEW;
END $$;
CREATE TRIGGER snare BEFORE INSERT ON tenantdb.control_version
    FOR EACH ROW EXECUTE FUNCTION tenantdb.snare();
"""
"""What a role on the server made before the operator came: the control schema's name,
open to all, with a version table whose trigger runs as whoever writes it."""


def server_ready(kubeconfig: Path, name: str) -> dict[str, str]:
    system = Kubectl(kubeconfig, OWN_NAMESPACE)
    status = system.get("databaseserver", name).get("status") or {}
    return next((c for c in status.get("conditions") or [] if c["type"] == "Ready"), {})


def test_a_control_schema_another_role_made_first_is_refused_and_runs_nothing_as_the_operator(
    kubeconfig: Path,
    operator: operator_process.OperatorProcess,
    second_postgres: postgres.EmbeddedPostgres,
) -> None:
    with psycopg.connect(second_postgres.superuser_url(), autocommit=True) as conn:
        conn.execute("CREATE ROLE squatter LOGIN")
        conn.execute("GRANT CREATE ON DATABASE tenantdb TO squatter")
        conn.execute("SET ROLE squatter")
        conn.execute(SQUATTER.encode())
    try:
        with declared(kubeconfig, second_postgres.operator_url, ready=False) as name:
            eventually(
                lambda: server_ready(kubeconfig, name).get("reason") == "ControlSchemaNotOwned",
                timeout=60,
            )
            assert "squatter" in server_ready(kubeconfig, name)["message"]
            system = Kubectl(kubeconfig, OWN_NAMESPACE)
            assert system.get("databaseserver", name)["status"]["phase"] != "Ready"
        with psycopg.connect(second_postgres.superuser_url(), autocommit=True) as conn:
            assert conn.execute("SELECT * FROM tenantdb.tripwire").fetchall() == []
            operator_owned = conn.execute(
                "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                " WHERE n.nspname = 'tenantdb' AND pg_get_userbyid(c.relowner) <> 'squatter'"
            ).fetchall()
            assert operator_owned == []
    finally:
        with psycopg.connect(second_postgres.superuser_url(), autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS tenantdb CASCADE")
            conn.execute("REVOKE CREATE ON DATABASE tenantdb FROM squatter")
            conn.execute("DROP ROLE squatter")


@pytest.mark.parametrize(
    "template",
    [
        "{role}:{password}@127.0.0.1:5432/tenantdb",  # the scheme forgotten
        "postgresql://{role}:{password} x@127.0.0.1:5432/tenantdb",  # a space not encoded
        "postgresql://{role}:{password}@127.0.0.1:5432/tenantdb?sslmod=require",  # a typo
    ],
    ids=["no-scheme", "space", "unknown-parameter"],
)
def test_a_server_secret_that_is_not_a_url_never_prints_its_password(
    kubeconfig: Path, operator: operator_process.OperatorProcess, template: str
) -> None:
    password = f"pw{uuid.uuid4().hex}"
    value = template.format(role="tenantdb_operator", password=password)
    with declared(kubeconfig, value, ready=False) as name:
        eventually(
            lambda: server_ready(kubeconfig, name).get("reason") == "InvalidServer", timeout=60
        )
        system = Kubectl(kubeconfig, OWN_NAMESPACE)
        seen = [
            json.dumps(system.get("databaseserver", name)),
            system.run("get", "events", "-o", "json").stdout,
            operator.log_path.read_text(),
        ]
    for text in seen:
        assert password not in text


def test_a_domain_held_on_one_server_cannot_be_claimed_from_another(
    boundary: Boundary,
    kubeconfig: Path,
    second_postgres: postgres.EmbeddedPostgres,
) -> None:
    domain = f"shop-{uuid.uuid4().hex[:6]}.example.com"
    victim = {"apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant"}
    boundary.b.kubectl.apply(
        json.dumps(
            {
                **victim,
                "metadata": {"name": "owner-of-domain"},
                "spec": {"isolation": "schema", "domain": domain, "deletionPolicy": "Delete"},
            }
        )
    )
    boundary.b.kubectl.wait("tenant/owner-of-domain", "condition=Ready", timeout=120)
    with declared(kubeconfig, second_postgres.operator_url, ready=False) as name:
        system = Kubectl(kubeconfig, OWN_NAMESPACE)
        system.wait(f"databaseserver/{name}", "condition=Ready", timeout=60)
        spec = {"isolation": "schema", "domain": domain, "serverRef": {"name": name}}
        spec["deletionPolicy"] = "Delete"
        boundary.a.kubectl.apply(
            json.dumps({**victim, "metadata": {"name": "claimer"}, "spec": spec})
        )
        try:

            def settled() -> str:
                status = boundary.a.kubectl.get("tenant", "claimer").get("status") or {}
                ready = next(
                    (c for c in status.get("conditions") or [] if c["type"] == "Ready"), {}
                )
                return str(ready.get("reason") or "")

            eventually(lambda: settled() in ("DomainConflict", "Provisioned"), timeout=120)
            assert settled() == "DomainConflict"
        finally:
            boundary.a.kubectl.run("delete", "tenant", "claimer", "--timeout=120s", check=False)
            boundary.b.kubectl.run(
                "delete", "tenant", "owner-of-domain", "--timeout=120s", check=False
            )


def test_a_tenant_on_the_second_server_cannot_climb_nor_hold_up_the_operator(
    boundary: Boundary, kubeconfig: Path, second_postgres: postgres.EmbeddedPostgres
) -> None:
    """As tenant A on server B, with its own Secret: every spelling of a role change is
    refused; a search_path of its own choosing and a lock it holds on its table reach
    none of the operator's work there (a new tenant on B, a rollout across servers)."""
    kubectl = boundary.a.kubectl  # the namespace user's own token
    with declared(kubeconfig, second_postgres.operator_url) as name:
        spec = {"isolation": "schema", "serverRef": {"name": name}, "deletionPolicy": "Delete"}
        body = {"apiVersion": "tenantdb.io/v1alpha1", "kind": "Tenant"}
        climber = {"name": "climber", "labels": {"boundary": "climber"}}
        kubectl.apply(json.dumps({**body, "metadata": climber, "spec": spec}))
        kubectl.wait("tenant/climber", "condition=Ready", timeout=120)
        migration = {
            "apiVersion": "tenantdb.io/v1alpha1",
            "kind": "Migration",
            "metadata": {"name": "goods"},
            "spec": {
                "version": next(boundary.versions),
                "up": "CREATE TABLE IF NOT EXISTS goods (id int)",
                "tenantSelector": {"matchLabels": {"boundary": "climber"}},
            },
        }
        kubectl.apply(json.dumps(migration))
        kubectl.wait("migration/goods", "jsonpath={.status.phase}=Succeeded", timeout=120)
        secret = kubectl.secret_data("climber-credentials")
        with psycopg.connect(secret["uri"], autocommit=True) as conn:
            for attempt in (
                "SET ROLE tenantdb_operator",
                "SET SESSION AUTHORIZATION tenantdb_operator",
                "SELECT set_config('role', 'tenantdb_operator', false)",
                "ALTER ROLE CURRENT_USER SUPERUSER",
                "GRANT tenantdb_operator TO CURRENT_USER",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(attempt)
            conn.execute("ALTER ROLE CURRENT_USER SET search_path = pg_temp, public")
            conn.execute("BEGIN")
            conn.execute("LOCK TABLE goods IN ACCESS EXCLUSIVE MODE")
            try:
                kubectl.apply(json.dumps({**body, "metadata": {"name": "neighbour"}, "spec": spec}))
                kubectl.wait("tenant/neighbour", "condition=Ready", timeout=120)
                kubectl.wait("tenant/climber", "condition=Ready", timeout=10)
            finally:
                conn.execute("ROLLBACK")
            row = conn.execute("SELECT current_user, session_user").fetchone()
            assert row == (secret["username"], secret["username"])
        with psycopg.connect(second_postgres.superuser_url(), autocommit=True) as admin:
            supers = admin.execute(
                "SELECT count(*) FROM pg_roles WHERE rolsuper AND rolname <> 'postgres'"
            ).fetchone()
            assert supers == (0,)
        for tenant in ("climber", "neighbour"):
            kubectl.run("delete", "tenant", tenant, "--timeout=120s")
