"""The operator's database role: what it lacks is said precisely, and refused where needed."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import psycopg
import pytest
from psycopg import conninfo, sql

from tenantdb import settings as settings_
from tenantdb.controllers import runtime
from tenantdb.core import commands, errors
from tests import servers

pytestmark = pytest.mark.postgres


@pytest.fixture
def weak_role(admin: psycopg.Connection, database_url: str) -> Iterator[tuple[str, str]]:
    """A LOGIN role with CREATEROLE only: no CREATEDB, no predefined roles."""
    name = f"weak_{uuid.uuid4().hex[:8]}"
    admin.execute(
        sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD 'weak-secret'").format(
            sql.Identifier(name)
        )
    )
    admin.execute(
        sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
            sql.Identifier(admin.info.dbname), sql.Identifier(name)
        )
    )
    url = conninfo.make_conninfo(database_url, user=name, password="weak-secret")
    yield name, url
    admin.execute(
        sql.SQL("REVOKE CONNECT ON DATABASE {} FROM {}").format(
            sql.Identifier(admin.info.dbname), sql.Identifier(name)
        )
    )
    admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


def inspect(url: str) -> commands.Privileges:
    server = commands.open_server(servers.database_settings(url), "privileges-tests", 1)
    try:
        return commands.inspect_privileges(server)
    finally:
        server.close()


def test_the_embedded_operator_role_has_what_it_needs_and_is_no_superuser(
    operator_url: str,
) -> None:
    held = inspect(operator_url)
    assert not held.superuser
    assert held.createrole and held.createdb
    assert held.missing() == []
    assert held.exposures() == []  # the embedded server closed postgres and template1
    assert all(held.refusal(mode) is None for mode in ("schema", "shared", "database"))


def test_what_is_missing_is_named_with_the_statement_that_grants_it(
    weak_role: tuple[str, str],
) -> None:
    name, url = weak_role
    held = inspect(url)
    missing = "\n".join(held.missing())
    assert f'ALTER ROLE "{name}" CREATEDB' in missing
    assert f'GRANT pg_signal_backend TO "{name}"' in missing
    assert f'GRANT pg_read_all_stats TO "{name}"' in missing
    assert "GRANT CREATE ON DATABASE" in missing
    assert "CREATEROLE" not in missing  # it has that one
    assert held.refusal("schema") is None
    refusal = held.refusal("database") or ""
    assert name in refusal and "CREATEDB" in refusal
    with pytest.raises(errors.InsufficientPrivilege, match="CREATEDB"):
        held.require("database")


def test_other_databases_open_to_public_are_named(
    operator_url: str, admin: psycopg.Connection
) -> None:
    name = f"open_{uuid.uuid4().hex[:8]}"
    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        exposures = inspect(operator_url).exposures()
        assert any(name in line and "REVOKE CONNECT" in line for line in exposures)
    finally:
        admin.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def test_an_operator_that_could_serve_no_tenant_refuses_to_start(
    weak_role: tuple[str, str], admin: psycopg.Connection
) -> None:
    name, url = weak_role
    admin.execute(sql.SQL("ALTER ROLE {} NOCREATEROLE").format(sql.Identifier(name)))
    settings = settings_.Settings(database=servers.database_settings(url, control_schema="weak"))
    with pytest.raises(errors.InsufficientPrivilege) as refused:
        runtime.Runtime.start(settings)
    message = str(refused.value)
    assert name in message and "CREATEROLE" in message and "GRANT CREATE ON DATABASE" in message
    exists = admin.execute("SELECT count(*) FROM pg_namespace WHERE nspname = 'weak'").fetchone()
    assert exists == (0,)  # nothing was attempted
