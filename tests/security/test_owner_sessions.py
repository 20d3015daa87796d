"""The operator's own statements on a tenant's owner session, against a real PostgreSQL
server and the engine: what the owner role sets for itself never steers them.

A Migration may ``ALTER ROLE CURRENT_USER SET search_path`` (every role may set its
own settings) and plant lookalikes of the functions the operator's marker probes
use; tenant sessions start with ``search_path=pg_catalog,pg_temp`` regardless.
"""

from __future__ import annotations

import psycopg
import pytest

from tenantdb.core import scoping
from tenantdb.core.migrations import engine, markers, scripts
from tests.integration.test_migrations_engine import ctx, scalar, tenant

pytestmark = pytest.mark.postgres
Outcome = engine.Outcome
__all__ = ["ctx", "tenant"]  # fixtures


def script(version: int, up: str, down: str) -> scripts.Script:
    return scripts.Script(version=version, name=f"m{version}", up=up, down=down)


def test_a_search_path_the_owner_set_itself_never_steers_the_marker_probes(
    ctx: engine.Context,
    tenant: scoping.TenantLocation,
    admin: psycopg.Connection,
    database_url: str,
) -> None:
    schema = tenant.schema_name
    first = script(1, "CREATE TABLE kept (id int)", "DROP TABLE kept")
    planting = script(
        2,
        "CREATE TABLE tripwire (called text);\n"
        "CREATE FUNCTION to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS"
        " $$ BEGIN INSERT INTO tripwire VALUES ('to_regclass'); RETURN NULL; END $$;\n"
        f'ALTER ROLE CURRENT_USER SET search_path = "{schema}", pg_catalog',
        f'DROP FUNCTION "{schema}".to_regclass(text)',
    )
    assert engine.apply(ctx, tenant, first).outcome is Outcome.APPLIED
    assert engine.apply(ctx, tenant, planting).outcome is Outcome.APPLIED
    with psycopg.connect(database_url) as control:  # live through the owner's search_path
        control.execute(f'SET search_path = "{schema}", pg_catalog')
        control.execute("SELECT to_regclass('x')")
        control.rollback()
    ctx.server.sessions.close()  # new sessions from here on: the role's setting applies
    for step in (planting, first):
        assert engine.revert(ctx, tenant, step).outcome is Outcome.ROLLED_BACK
    assert scalar(admin, f'SELECT count(*) FROM "{schema}".tripwire') == 0
    assert scalar(admin, "SELECT to_regclass(%s) IS NULL", f'"{schema}".kept') is True
    assert (
        scalar(
            admin,
            f'SELECT count(*) FROM "{schema}".{markers.MARKER_TABLE} WHERE rolled_back_at IS NULL',
        )
        == 0
    )
