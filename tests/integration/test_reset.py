"""Resetting a tenant against a real server, in every isolation mode.

Two tenants of the same mode (the same shared space for ``shared``) carry
the sample application's data; one is reset. Its data goes, its schema,
ledger and migration-written reference rows stay, its production seeders
run again; the other tenant's rows are compared row by row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, errors, locking, resetting, scoping
from tenantdb.core import seeding as api
from tenantdb.core.migrations import commands as migrations
from tenantdb.core.migrations import scripts
from tests.integration import test_seeding_support as support

pytestmark = pytest.mark.postgres

REFERENCE = scripts.Script(
    version=100,
    name="0100_countries",
    up="CREATE TABLE countries (code text PRIMARY KEY);\n"
    "INSERT INTO countries VALUES ('fr'), ('de');",
)
"""A migration that writes reference rows itself: they are the schema's, and stay."""
PLAN = [*scripts.load_directory(support.MIGRATIONS), REFERENCE]
PRODUCTION = {"roles": 4, "plans": 4, "settings": 6}


@pytest.fixture(scope="module")
def server(operator_url: str) -> Iterator[commands.Server]:
    with support.prepared_server(operator_url, "reset_ctl", "reset_shared") as prepared:
        yield prepared


def tenant(server: commands.Server, mode: Isolation) -> scoping.TenantLocation:
    location = support.provision(server, f"rs-{uuid.uuid4().hex[:6]}", mode)
    if mode is Isolation.SHARED:
        support.create_sample_tables(server, location)
    else:
        migrations.catch_up(server, PLAN, location.uid, applied_by="reset-tests")
    seed(server, location, "development")
    return location


def seed(server: commands.Server, location: scoping.TenantLocation, profile: str) -> None:
    api.seed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        location.uid,
        profile,
        (),
        "development",
        support.SEEDERS,
    )


def snapshot(server: commands.Server, location: scoping.TenantLocation) -> dict[str, list[Any]]:
    return {t.name: support.dump(server, location, t.name) for t in support.SAMPLE_TABLES}


def ledger_rows(server: commands.Server, uid: str) -> list[tuple[Any, ...]]:
    with connecting.connection(server.pool) as conn:
        return conn.execute(
            f"SELECT version, checksum, state, applied_at FROM {server.control_schema}"
            ".migration_ledger WHERE tenant_uid = %s ORDER BY version",
            (uid,),
        ).fetchall()


def tables_of(server: commands.Server, location: scoping.TenantLocation) -> list[str]:
    with support.tenant_connection(server, location) as conn:
        rows = conn.execute(
            "SELECT tablename::text FROM pg_tables WHERE schemaname = %s ORDER BY 1",
            (location.search_path(server.shared_schema),),
        )
        return [r[0] for r in rows]


def reset(server: commands.Server, location: scoping.TenantLocation, **changes: Any) -> Any:
    arguments: dict[str, Any] = {"environment": "development", "backup": None, **changes}
    confirmation = arguments.pop("confirmation", location.name)
    return resetting.reset(server, location.uid, confirmation, PLAN, **arguments)


@pytest.mark.parametrize("mode", list(Isolation), ids=str)
def test_reset_empties_the_data_keeps_the_schema_and_touches_no_other_tenant(
    server: commands.Server, mode: Isolation
) -> None:
    target, bystander = tenant(server, mode), tenant(server, mode)
    others_before = snapshot(server, bystander)
    assert sum(len(rows) for rows in others_before.values()) > sum(PRODUCTION.values())
    tables_before, ledger_before = tables_of(server, target), ledger_rows(server, target.uid)

    report = reset(server, target)

    emptied = snapshot(server, target)
    assert all(rows == [] for rows in emptied.values())
    assert set(report.emptied) >= {t.name for t in support.SAMPLE_TABLES}
    assert tables_of(server, target) == tables_before
    assert ledger_rows(server, target.uid) == ledger_before
    assert api.tenant_history(server.pool, server.control_schema, target.uid) == {}
    assert snapshot(server, bystander) == others_before  # row by row
    if mode is not Isolation.SHARED:
        assert report.kept == ["countries"]
        assert len(support.dump(server, target, "countries", order_by="code")) == 2
    else:
        assert report.rows_deleted == sum(len(rows) for rows in others_before.values())

    reseeded = resetting.reseed(
        server, target.uid, "production", "production", support.SEEDERS, "reset-tests"
    )

    assert sorted(reseeded) == sorted(PRODUCTION)
    counts = {table: len(rows) for table, rows in snapshot(server, target).items() if rows}
    assert counts == PRODUCTION
    assert snapshot(server, bystander) == others_before


@pytest.mark.parametrize("confirmation", [None, "", "someone-else"])
def test_reset_without_the_confirmation_is_refused_and_changes_nothing(
    server: commands.Server, confirmation: str | None
) -> None:
    target = tenant(server, Isolation.SCHEMA)
    before = snapshot(server, target)

    with pytest.raises(resetting.ResetRefused, match="confirm with the tenant's name"):
        reset(server, target, confirmation=confirmation)

    assert snapshot(server, target) == before


def test_reset_in_production_needs_a_backup(server: commands.Server) -> None:
    target = tenant(server, Isolation.SCHEMA)
    before = snapshot(server, target)

    with pytest.raises(resetting.ResetRefused, match="Backup"):
        reset(server, target, environment="production")

    assert snapshot(server, target) == before
    report = reset(server, target, environment="production", backup="nightly-1")
    assert report.backup == "nightly-1"


def test_reset_of_a_busy_tenant_is_reported_busy(server: commands.Server) -> None:
    target = tenant(server, Isolation.SCHEMA)
    before = snapshot(server, target)

    with (
        locking.hold(server.pool, server.control_schema, target.uid),
        pytest.raises(errors.TenantBusy),
    ):
        reset(server, target)

    assert snapshot(server, target) == before
