"""Namespace A attacks namespace B's shared space: through Migration objects the operator
runs, through a pooled application, through A's shared owner.

Two namespaces, each with a shared tenant and a ``scope: shared`` Migration of
the same version 1 that makes a table of its own. Every attack is a
``transactional: false`` Migration in A whose first statements record
``session_user, current_user`` in a table of A's space (committed before the
attack), so the test sees who the attack ran as; the attack then fails with
the database's permission error and nothing of B changes.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import yaml
from psycopg import errors

from tenantdb.core import commands, naming
from tenantdb.devenv import operator_process
from tests.e2e.kubectl import Kubectl

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
TIMEOUT = 120


@dataclass(frozen=True)
class Side:
    """One namespace: its kubectl, its shared space and its shared tenant."""

    kubectl: Kubectl
    space: naming.SharedNames
    tenant_uid: str
    secret: dict[str, str]

    @property
    def namespace(self) -> str:
        return self.kubectl.namespace


@dataclass(frozen=True)
class World:
    a: Side
    b: Side


def migration(name: str, version: int, up: str, **spec: object) -> str:
    body = {
        "apiVersion": "tenantdb.io/v1alpha1",
        "kind": "Migration",
        "metadata": {"name": name},
        "spec": {"version": version, "up": up, "scope": "shared", **spec},
    }
    return yaml.safe_dump(body)


def phase_of(kubectl: Kubectl, name: str, phases: tuple[str, ...]) -> dict[str, object]:
    """The Migration's status once its phase is one of ``phases``."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        status: dict[str, object] = kubectl.get("migration", name).get("status") or {}
        if status.get("phase") in phases:
            return status
        assert time.monotonic() < deadline, f"migration {name} stayed {status.get('phase')}"
        time.sleep(0.5)


def ledger_of(admin: psycopg.Connection, uid: str) -> list[tuple[object, ...]]:
    return admin.execute(
        "SELECT version, checksum, state, attempts, error, updated_at FROM tenantdb.migration_ledger"
        " WHERE tenant_uid = %s ORDER BY version",
        (uid,),
    ).fetchall()


def b_state(admin: psycopg.Connection, world: World) -> tuple[object, ...]:
    """Everything of B an attack could change: rows, columns, RLS, ACL, markers, ledger."""
    schema = world.b.space.schema
    rows = admin.execute(
        f"SELECT tenant_id::text, secret FROM {schema}.vault ORDER BY 1"
    ).fetchall()
    table = admin.execute(
        "SELECT c.relrowsecurity, c.relforcerowsecurity, c.relacl::text, pg_get_userbyid(c.relowner),"
        " ARRAY(SELECT attname::text FROM pg_attribute WHERE attrelid = c.oid AND attnum > 0"
        " AND NOT attisdropped ORDER BY attnum),"
        " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid)"
        " FROM pg_class c WHERE c.oid = to_regclass(%s)",
        (f"{schema}.vault",),
    ).fetchone()
    markers = admin.execute(
        f"SELECT version, checksum FROM {schema}.tenantdb_migrations ORDER BY 1"
    ).fetchall()
    mapping = admin.execute(
        f"SELECT role_name, tenant_id::text FROM {schema}.tenant_roles"
    ).fetchall()
    return rows, table, markers, mapping, ledger_of(admin, f"shared:{world.b.namespace}")


def _side(kubectl: Kubectl, server: commands.Server, table: str) -> Side:
    kubectl.run("create", "namespace", kubectl.namespace)
    kubectl.apply(
        "apiVersion: tenantdb.io/v1alpha1\nkind: Tenant\nmetadata:\n  name: member\n"
        "spec:\n  isolation: shared\n  deletionPolicy: Delete\n"
        "---\n"
        + migration(
            "base",
            1,
            f"CREATE TABLE {table} (tenant_id uuid NOT NULL, id bigint, secret text)",
            down=f"DROP TABLE {table}",
        )
    )
    kubectl.wait("tenant/member", "condition=Ready", timeout=TIMEOUT)
    phase_of(kubectl, "base", ("Succeeded",))
    obj = kubectl.get("tenant", "member")
    space = naming.shared_names(kubectl.namespace, server.shared_schema)
    assert obj["status"]["schema"] == space.schema
    return Side(kubectl, space, obj["metadata"]["uid"], kubectl.secret_data("member-credentials"))


@pytest.fixture(scope="module")
def world(
    kubeconfig: Path, operator: operator_process.OperatorProcess, server: commands.Server
) -> Iterator[World]:
    suffix = uuid.uuid4().hex[:6]
    a = _side(Kubectl(kubeconfig, f"ns-a-{suffix}"), server, "notes")
    b = _side(Kubectl(kubeconfig, f"ns-b-{suffix}"), server, "vault")
    for side in (a, b):
        with psycopg.connect(side.secret["uri"], autocommit=True) as conn:
            table = "notes" if side is a else "vault"
            conn.execute(
                f"INSERT INTO {table} (id, secret) VALUES (1, %s)", (f"of {side.namespace}",)
            )
    yield World(a, b)
    for side in (a, b):
        side.kubectl.run("delete", "namespace", side.namespace, "--wait=false", check=False)


def test_the_same_version_in_two_namespaces_is_two_migrations(
    world: World, admin: psycopg.Connection
) -> None:
    rows = {
        side.namespace: ledger_of(admin, f"shared:{side.namespace}") for side in (world.a, world.b)
    }
    (a_row,), (b_row,) = rows[world.a.namespace], rows[world.b.namespace]
    assert a_row[0] == b_row[0] == 1 and a_row[2] == b_row[2] == "applied"
    assert a_row[1] != b_row[1]  # two texts, neither drift of the other
    assert admin.execute(
        "SELECT to_regclass(%s)", (f"{world.a.space.schema}.vault",)
    ).fetchone() == (None,)


ATTACKS = {
    "select": "SELECT * FROM {b}.vault",
    "update": "UPDATE {b}.vault SET secret = 'stolen'",
    "delete": "DELETE FROM {b}.vault",
    "drop": "DROP TABLE {b}.vault",
    "alter": "ALTER TABLE {b}.vault DISABLE ROW LEVEL SECURITY",
    "lock": "DO $$ BEGIN LOCK TABLE {b}.vault IN ACCESS EXCLUSIVE MODE; END $$",
    "markers": "DELETE FROM {b}.tenantdb_migrations",
    "set-role": "SELECT set_config('role', '{b_login}', false)",
}


@pytest.mark.parametrize(("index", "attack"), list(enumerate(ATTACKS)), ids=list(ATTACKS))
def test_a_shared_migration_cannot_reach_another_namespace(
    world: World, admin: psycopg.Connection, index: int, attack: str
) -> None:
    """SELECT/UPDATE/DELETE/DROP/ALTER/LOCK on B's table, B's markers, SET ROLE to B's
    tenant: each fails with permission denied, as A's owner, and B is as it was."""
    before = b_state(admin, world)
    b_login = world.b.secret["username"]
    probe = f"probe_{attack.replace('-', '_')}"
    statement = ATTACKS[attack].format(b=world.b.space.schema, b_login=b_login)
    up = (
        f"CREATE TABLE {probe} (who name, acting name);\n"
        f"INSERT INTO {probe} SELECT session_user, current_user;\n"
        f"{statement}"
    )
    name = f"attack-{attack}"
    kubectl = world.a.kubectl
    kubectl.apply(migration(name, 100 + index, up, transactional=False))
    try:
        status = phase_of(kubectl, name, ("Halted", "Failed"))
        (failure,) = status["failures"]  # type: ignore[misc]
        assert "permission denied" in failure["error"], failure
        who = admin.execute(f"SELECT who, acting FROM {world.a.space.schema}.{probe}").fetchall()
        assert who == [(world.a.space.owner_role, world.a.space.owner_role)]
        assert b_state(admin, world) == before
    finally:
        kubectl.run("delete", "migration", name, "--wait=true")


@pytest.fixture(scope="module")
def pooled_a(database_url: str, world: World) -> Iterator[psycopg.Connection]:
    """An application role of namespace A's pooled group (made by the platform's admin)."""
    role = f"pooled_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD 'pooled-secret' IN ROLE {world.a.space.pooled_role}"
        )
        admin.execute(f"ALTER ROLE {role} SET search_path = {world.a.space.schema}")
    url = psycopg.conninfo.make_conninfo(database_url, user=role, password="pooled-secret")
    with psycopg.connect(url) as conn:
        yield conn
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f"DROP OWNED BY {role}")
        admin.execute(f"DROP ROLE {role}")


def test_a_pooled_app_cannot_select_another_namespace_tenant(
    world: World, pooled_a: psycopg.Connection
) -> None:
    conn = pooled_a
    a_token, b_token = world.a.secret["tenantToken"], world.b.secret["tenantToken"]
    with conn.transaction():
        conn.execute("SELECT set_tenant(%s, %s)", (world.a.tenant_uid, a_token))
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (1,)  # it works for A
    with (  # A's function, B's tenant and B's own token: B's token is no good in A's space
        pytest.raises(errors.InvalidAuthorizationSpecification),
        conn.transaction(),
    ):
        conn.execute("SELECT set_tenant(%s, %s)", (world.b.tenant_uid, b_token))
    with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
        conn.execute(
            f"SELECT {world.b.space.schema}.set_tenant(%s, %s)", (world.b.tenant_uid, b_token)
        )
    with conn.transaction():
        assert conn.execute("SELECT count(*) FROM notes").fetchone() == (0,)
    with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
        conn.execute(f"SELECT * FROM {world.b.space.schema}.vault")


def test_a_shared_owner_cannot_set_role_to_another_namespace_tenant(
    world: World, server: commands.Server
) -> None:
    a_login, b_login = world.a.secret["username"], world.b.secret["username"]
    database = world.a.secret["database"]
    with server.sessions.session(world.a.space.owner_role, database) as conn:
        with conn.transaction():
            conn.execute(f'SET LOCAL ROLE "{a_login}"')  # its own tenant: allowed (seeders)
        for role in (b_login, world.b.space.owner_role, world.b.space.pooled_role):
            with pytest.raises(errors.InsufficientPrivilege), conn.transaction():
                conn.execute(f'SET LOCAL ROLE "{role}"')


def test_rolling_back_a_shared_migration_leaves_the_other_namespace_alone(
    world: World, admin: psycopg.Connection
) -> None:
    before = b_state(admin, world)
    kubectl = world.a.kubectl
    kubectl.run("patch", "migration", "base", "--type=merge", "-p", '{"spec":{"rollback":true}}')
    deadline = time.monotonic() + TIMEOUT
    while {r[0]: r[2] for r in ledger_of(admin, f"shared:{world.a.namespace}")}[1] != "rolled_back":
        assert time.monotonic() < deadline, "A's version 1 was not rolled back"
        time.sleep(0.5)
    assert admin.execute(
        "SELECT to_regclass(%s)", (f"{world.a.space.schema}.notes",)
    ).fetchone() == (None,)
    assert b_state(admin, world) == before
    kubectl.run("delete", "migration", "base", "--wait=true")


def test_a_hostile_down_cannot_reach_another_namespace(
    world: World, admin: psycopg.Connection
) -> None:
    """A ``down`` that drops B's table and B's markers fails with permission denied; A's
    version stays applied with the error, and B is as it was."""
    kubectl = world.a.kubectl
    b = world.b.space.schema
    down = f"DELETE FROM {b}.tenantdb_migrations;\nDROP TABLE {b}.vault"
    kubectl.apply(
        migration("hostile", 60, "CREATE TABLE extra (tenant_id uuid NOT NULL)", down=down)
    )
    phase_of(kubectl, "hostile", ("Succeeded",))
    before = b_state(admin, world)
    kubectl.run("patch", "migration", "hostile", "--type=merge", "-p", '{"spec":{"rollback":true}}')
    status = phase_of(kubectl, "hostile", ("Halted", "Failed"))
    (failure,) = status["failures"]  # type: ignore[misc]
    assert "permission denied" in failure["error"], failure
    rows = {r[0]: r for r in ledger_of(admin, f"shared:{world.a.namespace}")}
    assert rows[60][2] == "applied" and "permission denied" in str(rows[60][4])
    assert b_state(admin, world) == before
