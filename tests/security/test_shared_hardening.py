"""Shared-mode hardening, against a real PostgreSQL server and the engine the operator runs:
keys that would tell one tenant about another's rows, tables tenants could read before
row-level security, and policies that look right by name only.

A tenant of the namespace's shared space attacks with its own login role, as its
application would; the shared-scope Migrations run as the space's owner.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest
from psycopg import conninfo

from tenantdb.api import migrations as api
from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, naming, passwords, securing
from tenantdb.core.migrations import engine, scripts
from tenantdb.settings import DEFAULT_PLANS

pytestmark = pytest.mark.postgres
Outcome = engine.Outcome


@dataclass(frozen=True)
class Space:
    """A fresh namespace's shared space, a tenant in it, and the engine's context."""

    namespace: str
    names: naming.SharedNames
    ctx: engine.Context
    target: object
    login_url: str

    def apply(self, version: int, up: str, transactional: bool = True) -> engine.Result:
        spec = api.MigrationSpec(
            version=version, up=up, scope=api.Scope.SHARED, transactional=transactional
        )
        script = scripts.from_spec(f"v{version}", spec)
        return engine.apply(self.ctx, self.target, script)  # type: ignore[arg-type]

    def table(self, name: str) -> str:
        return f'"{self.names.schema}"."{name}"'


@pytest.fixture
def space(server: commands.Server) -> Iterator[Space]:
    namespace = f"harden-{uuid.uuid4().hex[:6]}"
    password = passwords.generate()
    request = commands.TenantRequest(
        uid=str(uuid.uuid4()),
        name="tenant-a",
        namespace=namespace,
        isolation=Isolation.SHARED,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )
    provisioned = commands.provision(server, request, password, True)
    login_url = conninfo.make_conninfo(
        server.url,
        user=provisioned.names.login_role,
        password=password,
        dbname=provisioned.database,
        options="",
    )
    yield Space(
        namespace,
        naming.shared_names(namespace, server.shared_schema),
        engine.Context(server, "hardening-tests"),
        engine.shared_target(server, namespace),
        login_url,
    )
    commands.deprovision(server, request.uid, request.name, drop=True)


def exists(admin: psycopg.Connection, qualified: str) -> bool:
    row = admin.execute("SELECT to_regclass(%s) IS NOT NULL", (qualified,)).fetchone()
    return bool(row and row[0])


@pytest.mark.parametrize(
    "constraint",
    [
        "email text UNIQUE",
        "email text PRIMARY KEY",
        "email text, UNIQUE (email, tenant_id)",
        "during tstzrange, EXCLUDE USING gist (during WITH &&)",
    ],
    ids=["unique", "primary-key", "tenant-id-second", "exclusion"],
)
def test_a_key_spanning_tenants_is_refused_and_nothing_is_created(
    space: Space, admin: psycopg.Connection, constraint: str
) -> None:
    result = space.apply(1, f"CREATE TABLE leaky (tenant_id uuid NOT NULL, {constraint})")
    assert result.outcome is Outcome.FAILED
    assert "does not start with tenant_id" in (result.error or "")
    assert "42P16" in (result.error or "")
    assert not exists(admin, space.table("leaky"))  # rolled back with the migration


def test_a_key_starting_with_tenant_id_is_accepted(space: Space, admin: psycopg.Connection) -> None:
    """Positive control: the per-tenant key the docs recommend."""
    up = "CREATE TABLE users (tenant_id uuid NOT NULL, email text, UNIQUE (tenant_id, email))"
    assert space.apply(1, up).outcome is Outcome.APPLIED
    assert exists(admin, space.table("users"))


def test_identity_and_serial_columns_are_warned_about(space: Space) -> None:
    up = (
        "CREATE TABLE counted (tenant_id uuid NOT NULL, id bigint GENERATED ALWAYS AS IDENTITY,"
        " n serial, PRIMARY KEY (tenant_id, id))"
    )
    result = space.apply(1, up)
    assert result.outcome is Outcome.APPLIED
    warned = [f for f in result.findings if f.startswith("warning:")]
    assert any("counted column id" in f for f in warned), result.findings
    assert any("counted column n" in f for f in warned), result.findings


def test_a_table_is_unreadable_between_statements_of_a_non_transactional_migration(
    space: Space, admin: psycopg.Connection
) -> None:
    """Statement 1 creates and fills a table; statement 2 fails: the table stays, committed,
    but tenants were never granted it, because default privileges give them nothing."""
    up = (
        "CREATE TABLE staged (tenant_id uuid NOT NULL, secret text);\n"
        "INSERT INTO staged SELECT gen_random_uuid(), 'of another tenant';\n"
        "SELECT no_such_function();"
    )
    result = space.apply(1, up, transactional=False)
    assert result.outcome is Outcome.FAILED
    assert exists(admin, space.table("staged"))
    with (
        psycopg.connect(space.login_url) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege),
    ):
        conn.execute(f"SELECT * FROM {space.table('staged')}")
    relforce = admin.execute(
        "SELECT relforcerowsecurity FROM pg_class WHERE oid = to_regclass(%s)",
        (space.table("staged"),),
    ).fetchone()
    assert relforce == (False,)  # not yet secured: and still unreadable


def test_a_secured_table_is_granted_to_tenants_positive_control(space: Space) -> None:
    assert space.apply(1, "CREATE TABLE notes (tenant_id uuid NOT NULL, body text)").outcome is (
        Outcome.APPLIED
    )
    with psycopg.connect(space.login_url) as conn:
        conn.execute(f"INSERT INTO {space.table('notes')} (body) VALUES ('mine')")
        rows = conn.execute(f"SELECT body FROM {space.table('notes')}").fetchall()
    assert rows == [("mine",)]


@pytest.mark.parametrize(
    "tampering",
    [
        "CREATE POLICY anyone ON {table} AS PERMISSIVE FOR SELECT USING (true)",
        "ALTER POLICY tenantdb_isolation ON {table} USING (true) WITH CHECK (true)",
        "ALTER POLICY tenantdb_tenant_rows ON {table} TO tenantdb_operator",
        "DROP POLICY tenantdb_isolation ON {table};"
        " CREATE POLICY tenantdb_isolation ON {table} AS PERMISSIVE FOR ALL"
        " USING (tenant_id = (SELECT {schema}.current_tenant_id()))"
        " WITH CHECK (tenant_id = (SELECT {schema}.current_tenant_id()))",
    ],
    ids=["extra-policy", "same-name-true", "other-roles", "restrictive-made-permissive"],
)
def test_policies_are_compared_by_what_they_say_not_by_name(
    space: Space, server: commands.Server, admin: psycopg.Connection, tampering: str
) -> None:
    assert space.apply(1, "CREATE TABLE notes (tenant_id uuid NOT NULL, body text)").outcome is (
        Outcome.APPLIED
    )
    table, schema = space.table("notes"), f'"{space.names.schema}"'
    admin.execute(tampering.format(table=table, schema=schema))
    with server.pool.connection() as conn:
        found = securing.read_tables(conn, space.names)
        assert [t.isolated for t in found if t.name == "notes"] == [False]
        with conn.transaction():
            findings = securing.secure_tables(conn, space.names)
        assert any("notes lacked" in f for f in findings), findings
        again = securing.read_tables(conn, space.names)
    assert [t.isolated for t in again if t.name == "notes"] == [True]
    policies = admin.execute(
        "SELECT polname, polpermissive FROM pg_policy WHERE polrelid = to_regclass(%s) ORDER BY 1",
        (table,),
    ).fetchall()
    assert policies == [("tenantdb_isolation", False), ("tenantdb_tenant_rows", True)]
