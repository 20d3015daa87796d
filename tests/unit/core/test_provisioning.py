"""The SQL builders quote every identifier and never inline raw input."""

import pytest
from psycopg import sql

from tenantdb.core import naming, passwords, provisioning
from tenantdb.settings import PlanLimits

NAMES = naming.tenant_names("acme", "uid-1")


@pytest.fixture(scope="module")
def as_text() -> object:
    """Render composed SQL without a server (quoting rules of a UTF-8 connection)."""

    def render(composed: sql.Composable) -> str:
        return composed.as_string(None)

    return render


def test_schema_is_created_for_the_owner_role(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.create_schema(NAMES))
    assert (
        f'CREATE SCHEMA IF NOT EXISTS "{NAMES.schema}" AUTHORIZATION "{NAMES.owner_role}"' in text
    )


def test_login_role_gets_no_dangerous_attribute(as_text) -> None:  # type: ignore[no-untyped-def]
    limits = PlanLimits(connection_limit=7)
    text = as_text(
        provisioning.create_login_role(NAMES, "SCRAM-SHA-256$4096:x$y:z", limits, suspended=False)
    )
    for attribute in ("NOSUPERUSER", "NOCREATEDB", "NOCREATEROLE", "NOBYPASSRLS", "NOINHERIT"):
        assert attribute in text
    assert "CONNECTION LIMIT 7" in text
    assert "PASSWORD 'SCRAM-SHA-256$4096:x$y:z'" in text


def test_a_suspended_tenant_s_login_role_is_created_nologin(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.create_login_role(NAMES, "v", PlanLimits(), suspended=True))
    assert f'CREATE ROLE "{NAMES.login_role}" NOLOGIN' in text


def test_a_role_created_in_the_transaction_gets_only_its_settings(as_text) -> None:  # type: ignore[no-untyped-def]
    limits = PlanLimits(statement_timeout="5s")
    text = as_text(provisioning.configure_login_role(NAMES, limits, suspended=False, created=True))
    assert text == f"ALTER ROLE \"{NAMES.login_role}\" SET statement_timeout = '5s'"


def test_the_operator_joins_an_owner_role_as_it_creates_it_from_postgresql_16(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.create_owner_role(NAMES, "v", 160000))
    assert text.startswith("SET LOCAL createrole_self_grant = 'set, inherit';")
    assert text.endswith("SET LOCAL createrole_self_grant = ''")
    assert provisioning.joins_on_creation(160000)
    assert "createrole_self_grant" not in as_text(
        provisioning.create_owner_role(NAMES, "v", 150000)
    )
    assert not provisioning.joins_on_creation(150000)


def test_values_are_literals_not_identifiers(as_text) -> None:  # type: ignore[no-untyped-def]
    limits = PlanLimits(connection_limit=7, statement_timeout="5s'; DROP TABLE x; --")
    text = as_text(provisioning.configure_login_role(NAMES, limits, suspended=False))
    assert "CONNECTION LIMIT 7" in text
    assert "statement_timeout = '5s''; DROP TABLE x; --'" in text
    assert "RESET work_mem" in text


def test_suspension_makes_the_role_nologin(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.configure_login_role(NAMES, PlanLimits(), suspended=True))
    assert f'ALTER ROLE "{NAMES.login_role}" NOLOGIN' in text


def test_grants_revoke_public_and_scope_to_the_tenant(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.grant_schema_access(NAMES))
    assert f'REVOKE ALL ON SCHEMA "{NAMES.schema}" FROM PUBLIC' in text
    assert f'GRANT USAGE ON SCHEMA "{NAMES.schema}" TO "{NAMES.login_role}"' in text
    assert f'REVOKE CREATE ON SCHEMA "{NAMES.schema}" FROM "{NAMES.login_role}"' in text
    assert "PUBLIC" not in text.replace("FROM PUBLIC", "")


def test_grants_revoke_from_the_connect_group_too(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.grant_schema_access(NAMES, "op_connect"))
    assert f'REVOKE ALL ON SCHEMA "{NAMES.schema}" FROM PUBLIC, "op_connect"' in text
    assert text.count("op_connect") == 1


def test_a_hostile_database_name_is_quoted(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.grant_connect(NAMES, 'db"; DROP ROLE x; --', NAMES.owner_role))
    assert 'DATABASE "db""; DROP ROLE x; --"' in text


def test_drop_roles_drops_owned_objects_first(as_text) -> None:  # type: ignore[no-untyped-def]
    text = as_text(provisioning.drop_roles([NAMES.login_role, NAMES.owner_role]))
    assert text.index("DROP OWNED BY") < text.index("DROP ROLE")


def test_scram_verifier_has_postgres_format() -> None:
    verifier = passwords.scram_verifier("pencil", salt=b"0123456789abcdef")
    prefix, iterations_salt, keys = verifier.split("$")
    assert prefix == "SCRAM-SHA-256"
    assert iterations_salt.startswith("4096:")
    stored, server = keys.split(":")
    assert len(stored) == len(server) == 44  # base64 of 32 bytes
    assert verifier == passwords.scram_verifier("pencil", salt=b"0123456789abcdef")
    assert verifier != passwords.scram_verifier("pencil2", salt=b"0123456789abcdef")


def test_generated_passwords_are_long_and_distinct() -> None:
    generated = {passwords.generate() for _ in range(100)}
    assert len(generated) == 100
    assert all(len(p) >= 32 for p in generated)
