"""Dump and restore of one tenant, per isolation mode, against a real PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting
from tenantdb.core import seeding as seeding_api
from tests.integration import backup_support as support
from tests.integration import test_seeding_support as seeding

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server(operator_url: str) -> Iterator[commands.Server]:
    with seeding.prepared_server(operator_url, "backup_ctl", "backup_shared") as prepared:
        yield prepared


def _seed(server: commands.Server, uid: str, profile: str) -> seeding_api.SeedReport:
    return seeding_api.seed_tenant(
        server.pool,
        server.control_schema,
        server.shared_schema,
        server.sessions,
        uid,
        profile,
        (),
        "development",
        seeding.SEEDERS,
    )


@pytest.mark.parametrize("mode", [Isolation.SCHEMA, Isolation.DATABASE], ids=str)
def test_a_migrated_seeded_tenant_comes_back_row_for_row(
    server: commands.Server, mode: Isolation, tmp_path: Path
) -> None:
    source, password = support.provision(server, "src", mode)
    with connecting.connection(server.pool) as conn:
        location = seeding.scoping.load(conn, server.control_schema, source.uid)
    assert location is not None
    seeding.migrate(server, location)
    _seed(server, source.uid, "development")
    with support.login(server, source, password) as app:
        app.execute("INSERT INTO users (email, full_name) VALUES ('own@example.com', 'Own')")
    archive = support.dump_to_file(server, source, tmp_path / "dump")
    assert archive.schema_version == 11 and len(archive.migrations) == 11
    assert {t.name for t in archive.tables} >= {"users", "leads", "inbox_messages"}
    assert sum(t.rows for t in archive.tables) > 10_000

    target, target_password = support.provision(server, "dst", mode)
    support.restore_file(server, archive, tmp_path / "dump", target)

    home_source = source.schema_name if mode is Isolation.SCHEMA else "public"
    home_target = target.schema_name if mode is Isolation.SCHEMA else "public"
    with (
        server.sessions.session(source.owner_role, source.database_name) as old,
        server.sessions.session(target.owner_role, target.database_name) as new,
    ):
        for table in archive.tables:
            assert support.rows(old, f"{home_source}.{table.name}") == support.rows(
                new, f"{home_target}.{table.name}"
            ), table.name
        assert support.sequences(old, str(home_source)) == support.sequences(new, str(home_target))
    with (
        support.login(server, source, password) as old,
        support.login(server, target, target_password) as new,
    ):
        assert support.rows(new, "users") == support.rows(old, "users")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            new.execute("SELECT * FROM tenantdb_migrations")  # the revocation came along
        statement = (
            "INSERT INTO users (email, full_name) VALUES ('next@example.com', 'N') RETURNING id"
        )
        assert old.execute(statement).fetchone() == new.execute(statement).fetchone()
    with connecting.connection(server.pool) as conn:
        applied = conn.execute(
            f"SELECT version, applied_by FROM {server.control_schema}.migration_ledger"
            " WHERE tenant_uid = %s AND state = 'applied' ORDER BY version",
            (target.uid,),
        ).fetchall()
    assert applied == [(v, "restore") for v in range(1, 12)]
    again = _seed(server, target.uid, "development")
    assert again.applied == [] and sorted(again.skipped) == sorted(archive.seeders)
