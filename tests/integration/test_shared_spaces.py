"""Shared spaces per namespace, against a real PostgreSQL server: what the engine and
provisioning alone decide (two namespaces apart, versions apart, legacy tenants kept)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest

from tenantdb.api import migrations as api
from tenantdb.api.tenants import Isolation
from tenantdb.core import (
    commands,
    connect_group,
    connecting,
    naming,
    passwords,
    registry,
    scoping,
    securing,
    shared,
    spaces,
)
from tenantdb.core.migrations import commands as migration_commands
from tenantdb.core.migrations import engine, ledger, scripts
from tenantdb.settings import DEFAULT_PLANS
from tests import servers

pytestmark = pytest.mark.postgres


def request(name: str, namespace: str, uid: str | None = None) -> commands.TenantRequest:
    return commands.TenantRequest(
        uid=uid or str(uuid.uuid4()),
        name=name,
        namespace=namespace,
        isolation=Isolation.SHARED,
        plan="standard",
        limits=DEFAULT_PLANS["standard"],
    )


def script(version: int, up: str, down: str | None = None) -> scripts.Script:
    spec = api.MigrationSpec(version=version, up=up, down=down, scope=api.Scope.SHARED)
    return scripts.from_spec(f"v{version}", spec)


def scalar(admin: psycopg.Connection, query: str, *params: object) -> object:
    row = admin.execute(query, params).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture
def two(server: commands.Server) -> tuple[str, str]:
    suffix = uuid.uuid4().hex[:6]
    return f"space-a-{suffix}", f"space-b-{suffix}"


def test_two_namespaces_get_separate_schemas_and_roles(
    server: commands.Server, admin: psycopg.Connection, two: tuple[str, str]
) -> None:
    ns_a, ns_b = two
    a = commands.provision(server, request("alpha", ns_a), "pw", True)
    b = commands.provision(server, request("beta", ns_b), "pw", True)
    space_a = naming.shared_names(ns_a, server.shared_schema)
    space_b = naming.shared_names(ns_b, server.shared_schema)
    assert (a.schema, a.owner_role) == (space_a.schema, space_a.owner_role)
    assert (b.schema, b.owner_role) == (space_b.schema, space_b.owner_role)
    assert space_a.schema != space_b.schema and not set(space_a.roles) & set(space_b.roles)
    for space in (space_a, space_b):
        assert (
            scalar(
                admin,
                "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s",
                space.schema,
            )
            == space.owner_role
        )
        assert (
            scalar(
                admin, "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", list(space.roles)
            )
            == 3
        )
    recorded = scalar(
        admin,
        "SELECT schema_name FROM tenantdb.tenants WHERE login_role = %s",
        a.names.login_role,
    )
    assert recorded == space_a.schema
    # A's roles have no privilege of any kind on B's schema, and are members of none of B's roles.
    for role in (*space_a.roles, a.names.login_role):
        for privilege in ("USAGE", "CREATE"):
            assert (
                scalar(
                    admin,
                    "SELECT has_schema_privilege(%s, %s, %s)",
                    role,
                    space_b.schema,
                    privilege,
                )
                is False
            )
        for other in (*space_b.roles, b.names.login_role):
            assert scalar(admin, "SELECT pg_has_role(%s, %s, 'MEMBER')", role, other) is False
    members = admin.execute(
        "SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = %s ORDER BY 1",
        (a.names.login_role,),
    ).fetchall()
    with server.pool.connection() as conn:
        connect = connect_group.role_name(conn.info.user)
    assert members == sorted([(space_a.members_role,), (connect,)])
    assert scalar(
        admin, "SELECT pg_has_role(%s, %s, 'MEMBER')", space_a.owner_role, a.names.login_role
    )
    listed = {r.name: r for r, _ in commands.list_tenants(server, ns_a)}
    assert commands.verify_isolation(server, listed["alpha"].uid, "alpha") == []
    with connecting.connection(server.pool) as conn:
        known = spaces.recorded(conn, server.control_schema)
    assert known[ns_a] == space_a and known[ns_b] == space_b


def test_a_shared_migration_makes_its_namespace_space_on_demand(
    server: commands.Server, admin: psycopg.Connection, two: tuple[str, str]
) -> None:
    ns_a, _ = two
    space = naming.shared_names(ns_a, server.shared_schema)
    assert scalar(admin, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", space.schema) == 0
    ctx = engine.Context(server, "spaces-tests")
    target = engine.shared_target(server, ns_a)
    change = script(1, "CREATE TABLE things (tenant_id uuid NOT NULL, id bigint)")
    result = engine.apply(ctx, target, change)
    assert result.outcome is engine.Outcome.APPLIED, result.error
    assert (
        scalar(
            admin,
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass(%s)",
            f"{space.schema}.things",
        )
        == space.owner_role
    )


def test_the_same_version_in_two_namespaces_is_two_independent_migrations(
    server: commands.Server, admin: psycopg.Connection, two: tuple[str, str]
) -> None:
    ns_a, ns_b = two
    ctx = engine.Context(server, "spaces-tests")
    target_a, target_b = engine.shared_target(server, ns_a), engine.shared_target(server, ns_b)
    assert (target_a.uid, target_b.uid) == (f"shared:{ns_a}", f"shared:{ns_b}")
    in_a = script(7, "CREATE TABLE apples (tenant_id uuid NOT NULL)", "DROP TABLE apples")
    in_b = script(7, "CREATE TABLE pears (tenant_id uuid NOT NULL)", "DROP TABLE pears")
    assert engine.apply(ctx, target_a, in_a).outcome is engine.Outcome.APPLIED
    result = engine.apply(ctx, target_b, in_b)  # another text, same version: no drift
    assert result.outcome is engine.Outcome.APPLIED, result.error
    rows = admin.execute(
        "SELECT tenant_uid, namespace, checksum, state FROM tenantdb.migration_ledger"
        " WHERE version = 7 AND tenant_uid = ANY(%s) ORDER BY tenant_uid",
        ([target_a.uid, target_b.uid],),
    ).fetchall()
    assert rows == [
        (target_a.uid, ns_a, in_a.checksum, "applied"),
        (target_b.uid, ns_b, in_b.checksum, "applied"),
    ]
    assert engine.revert(ctx, target_a, in_a).outcome is engine.Outcome.ROLLED_BACK
    states = dict(
        admin.execute(
            "SELECT tenant_uid, state FROM tenantdb.migration_ledger"
            " WHERE version = 7 AND tenant_uid = ANY(%s)",
            ([target_a.uid, target_b.uid],),
        ).fetchall()
    )
    assert states == {target_a.uid: "rolled_back", target_b.uid: "applied"}
    assert scalar(admin, "SELECT to_regclass(%s) IS NULL", f"{target_a.schema_name}.apples")
    assert scalar(admin, "SELECT to_regclass(%s) IS NOT NULL", f"{target_b.schema_name}.pears")
    marker = f"{target_b.schema_name}.tenantdb_migrations"
    assert scalar(admin, f"SELECT count(*) FROM {marker} WHERE version = 7") == 1
    summary = migration_commands.status(server, ns_b)
    assert [(r["namespace"], r["version"], r["applied"]) for r in summary] == [(ns_b, 7, 1)]


@pytest.fixture
def legacy_server(operator_url: str) -> Iterator[commands.Server]:
    """An installation with a control schema and legacy shared schema of its own."""
    suffix = uuid.uuid4().hex[:6]
    db = servers.database_settings(
        operator_url, control_schema=f"legacy_ctl_{suffix}", shared_schema=f"legacy_{suffix}"
    )
    server = commands.open_server(db, f"legacy-{suffix}", 4)
    try:
        commands.prepare(server)
        yield server
    finally:
        server.close()


def test_a_legacy_shared_tenant_keeps_working(
    legacy_server: commands.Server, admin: psycopg.Connection
) -> None:
    """A tenant an earlier version put in the legacy schema: reconcile, verification,
    rotation, catch-up and deletion keep it there."""
    server = legacy_server
    legacy = shared.legacy(server.shared_schema)
    key = passwords.role_password(server.sessions.key, legacy.owner_role)
    with connecting.connection(server.pool) as conn, conn.transaction():
        spaces.build(conn, legacy, passwords.scram_verifier(key))  # what earlier versions made
    old = request("elder", "legacy-ns")
    names = naming.tenant_names(old.name, old.uid)
    with connecting.connection(server.pool) as conn:
        home = scalar(conn, "SELECT current_database()")  # type: ignore[arg-type]
        record = registry.TenantRecord(
            uid=old.uid,
            name=old.name,
            namespace=old.namespace,
            display_name=None,
            domain=None,
            isolation="shared",
            schema_name=legacy.schema,
            database_name=str(home),
            owner_role=legacy.owner_role,
            login_role=names.login_role,
            plan="standard",
            suspended=False,
            metadata={},
        )
        params = {
            **record.__dict__,
            "metadata": psycopg.types.json.Jsonb({}),
            "restoring_from": None,
        }
        conn.execute(registry.upsert(server.control_schema), params)
    password = passwords.generate()
    location = commands.provision(server, old, password, True)
    assert (location.schema, location.owner_role) == (legacy.schema, legacy.owner_role)
    assert commands.verify_isolation(server, old.uid, old.name) == []
    assert (
        scalar(
            admin,
            f"SELECT tenant_id::text FROM {legacy.schema}.tenant_roles WHERE role_name = %s",
            names.login_role,
        )
        == old.uid
    )
    with server.sessions.session(legacy.owner_role, location.database) as owner:
        owner.execute(f"CREATE TABLE {legacy.schema}.diary (tenant_id uuid NOT NULL, note text)")
        with owner.transaction():
            securing.secure_tables(owner, legacy, as_owner=True)
    url = psycopg.conninfo.make_conninfo(
        server.url, user=names.login_role, password=password, options=""
    )
    with psycopg.connect(url, autocommit=True) as app:
        app.execute("INSERT INTO diary (note) VALUES ('kept')")
        assert app.execute("SELECT count(*) FROM diary").fetchone() == (1,)
    commands.rotate_password(server, old.name, old.uid, "new-password")
    with connecting.connection(server.pool) as conn:
        found = scoping.load(conn, server.control_schema, old.uid)
    assert found is not None and found.search_path("") == legacy.schema
    assert migration_commands.shared_uid_of(server, found) == ledger.SHARED_TARGET
    commands.prepare(server)  # a restart keeps the legacy space current
    commands.deprovision(server, old.uid, old.name, drop=True)
    assert scalar(admin, f"SELECT count(*) FROM {legacy.schema}.diary") == 0
    assert scalar(admin, f"SELECT count(*) FROM {legacy.schema}.tenant_roles") == 0
