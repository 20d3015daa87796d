"""Attacks on database isolation, and the roles' attributes in every mode."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import conninfo, errors

from tenantdb.core import connect_group
from tests.security.conftest import Pair

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
DANGEROUS = "rolsuper OR rolbypassrls OR rolcreaterole OR rolcreatedb OR rolreplication"


def test_connect_to_b_database(world: dict[str, Pair]) -> None:
    pair = world["database"]
    url = conninfo.make_conninfo(pair.a.secret["uri"], dbname=pair.b.status["database"])
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(url, connect_timeout=10).close()


def test_create_in_own_public_schema(world: dict[str, Pair]) -> None:
    with world["database"].a.connect() as conn, pytest.raises(errors.InsufficientPrivilege):
        conn.execute("CREATE TABLE public.planted (v int)")


def test_public_cannot_connect_to_tenant_databases(
    world: dict[str, Pair], admin: psycopg.Connection
) -> None:
    for tenant in (world["database"].a, world["database"].b):
        row = admin.execute(
            "SELECT has_database_privilege('public', %s, 'CONNECT')", (tenant.status["database"],)
        ).fetchone()
        assert row == (False,)


def test_registry_unreachable_from_the_operator_database(world: dict[str, Pair]) -> None:
    """The operator's database is closed to PUBLIC: a database tenant cannot even open it
    (its catalogs name every schema tenant), let alone read the registry."""
    pair = world["database"]
    operator_database = world["schema"].a.status["database"]  # where the registry lives
    url = conninfo.make_conninfo(pair.a.secret["uri"], dbname=operator_database)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(url, connect_timeout=10).close()
    with world["schema"].a.connect() as conn:  # positive control: its tenants still can
        assert conn.execute("SELECT current_database()").fetchone() == (operator_database,)


@pytest.mark.parametrize("database", ["postgres", "template1"])
def test_database_tenant_reaches_no_other_database(world: dict[str, Pair], database: str) -> None:
    url = conninfo.make_conninfo(world["database"].a.secret["uri"], dbname=database)
    with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
        psycopg.connect(url, connect_timeout=10).close()


@pytest.mark.parametrize("mode", ["schema", "shared", "database"])
def test_no_tenant_role_holds_a_dangerous_attribute_or_membership(
    world: dict[str, Pair], admin: psycopg.Connection, mode: str
) -> None:
    pair = world[mode]
    roles = {pair.a.status["role"], pair.b.status["role"]}
    if mode != "shared":
        roles |= {pair.a.status["ownerRole"], pair.b.status["ownerRole"]}
    existing = admin.execute(
        "SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(roles),)
    )
    assert existing.fetchone() == (len(roles),)
    dangerous = admin.execute(
        f"SELECT rolname FROM pg_roles WHERE rolname = ANY(%s) AND ({DANGEROUS})", (list(roles),)
    )
    assert dangerous.fetchall() == []
    groups = admin.execute(
        "SELECT r.rolname, g.rolname FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
        " JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = ANY(%s)",
        (list(roles),),
    ).fetchall()
    if mode == "shared":
        allowed = {(r, f"{pair.a.status['schema']}_tenants") for r in roles}
    else:  # each owner may SET ROLE to its own login role, to seed as the application
        allowed = {(t.status["ownerRole"], t.status["role"]) for t in (pair.a, pair.b)}
    if mode != "database":  # they connect to the operator's database through its group
        allowed |= {(r, connect_group.role_name("tenantdb_operator")) for r in roles}
    assert set(groups) <= allowed
    assert not {"pg_read_all_data", "pg_write_all_data"} & {g for _, g in groups}
