"""Attacks on schema isolation: A, with its own credentials, goes after B."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import errors

from tests.security.conftest import Pair

pytestmark = [pytest.mark.kube, pytest.mark.postgres, pytest.mark.operator]
DENIED = errors.InsufficientPrivilege


@pytest.fixture(scope="module")
def pair(world: dict[str, Pair]) -> Pair:
    return world["schema"]


def attack(pair: Pair, statement: str, expected: type[Exception] = DENIED) -> None:
    with pair.a.connect(autocommit=True) as conn, pytest.raises(expected):
        conn.execute(statement)


def test_read_b_rows_by_qualified_name(pair: Pair) -> None:
    attack(pair, f'SELECT * FROM "{pair.b.status["schema"]}".notes')


def test_write_b_rows(pair: Pair) -> None:
    attack(pair, f"INSERT INTO \"{pair.b.status['schema']}\".notes VALUES (2, 'planted')")


def test_create_in_b_schema(pair: Pair) -> None:
    attack(pair, f'CREATE TABLE "{pair.b.status["schema"]}".planted (v int)')


def test_create_in_public_search_path_hijack(pair: Pair) -> None:
    attack(pair, "CREATE TABLE public.notes (id int, body text)")


def test_create_function_in_public(pair: Pair) -> None:
    attack(pair, "CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS 'SELECT $1'")


def test_login_role_creates_nothing_in_its_own_schema(pair: Pair) -> None:
    attack(pair, "CREATE TABLE planted (v int)")


def test_search_path_to_b_schema_still_denied(pair: Pair) -> None:
    # Positive control: the table is there and B can read it with the same search_path.
    with pair.b.connect(autocommit=True) as conn:
        conn.execute(f'SET search_path = "{pair.b.status["schema"]}"')
        assert conn.execute("SELECT body FROM notes").fetchall() == [(f"secret of {pair.b.name}",)]
    with pair.a.connect(autocommit=True) as conn:
        conn.execute(f'SET search_path = "{pair.b.status["schema"]}"')
        with pytest.raises(errors.UndefinedTable):
            conn.execute("SELECT * FROM notes")


def test_set_role_to_b(pair: Pair) -> None:
    attack(pair, f'SET ROLE "{pair.b.status["role"]}"')


def test_set_role_to_own_owner_role(pair: Pair) -> None:
    attack(pair, f'SET ROLE "{pair.a.status["ownerRole"]}"')


def test_set_role_to_b_owner_role(pair: Pair) -> None:
    attack(pair, f'SET ROLE "{pair.b.status["ownerRole"]}"')


def test_read_the_tenant_registry(pair: Pair) -> None:
    attack(pair, "SELECT * FROM tenantdb.tenants")


def test_grant_own_table_to_b_gives_b_nothing(pair: Pair) -> None:
    with pair.a.connect(autocommit=True) as conn:
        conn.execute(f'GRANT SELECT ON notes TO "{pair.b.status["role"]}"')  # a warning, no grant
    with pair.b.connect(autocommit=True) as conn, pytest.raises(DENIED):
        conn.execute(f'SELECT * FROM "{pair.a.status["schema"]}".notes')


def test_escalate_own_role_attributes(pair: Pair) -> None:
    attack(pair, f'ALTER ROLE "{pair.a.status["role"]}" BYPASSRLS')


def test_change_b_password(pair: Pair) -> None:
    attack(pair, f"ALTER ROLE \"{pair.b.status['role']}\" PASSWORD 'mine'")


def test_drop_own_table_needs_ownership(pair: Pair) -> None:
    attack(pair, "DROP TABLE notes")


def test_drop_b_schema(pair: Pair) -> None:
    attack(pair, f'DROP SCHEMA "{pair.b.status["schema"]}" CASCADE')


def test_read_server_files(pair: Pair) -> None:
    attack(pair, "SELECT pg_read_file('postgresql.conf')")


def test_copy_to_program(pair: Pair) -> None:
    attack(pair, "COPY notes TO PROGRAM 'id'")


def test_connection_limit_of_the_plan_is_enforced(pair: Pair) -> None:
    """The free plan allows 5 connections; the sixth is refused."""
    held = [pair.a.connect() for _ in range(5)]
    try:
        with pytest.raises(psycopg.OperationalError, match="too many connections"):
            pair.a.connect().close()
    finally:
        for conn in held:
            conn.close()


def test_own_rows_are_readable(pair: Pair) -> None:
    """The control: without this, every attack above could pass by accident."""
    with pair.a.connect() as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [(f"secret of {pair.a.name}",)]
