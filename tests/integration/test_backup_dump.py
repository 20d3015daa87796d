"""Dump and restore of one tenant, per isolation mode, against a real PostgreSQL."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tenantdb.api.tenants import Isolation
from tenantdb.core import commands, connecting, registry, scoping
from tenantdb.core import seeding as seeding_api
from tenantdb.core.backups import framing, manifest, snapshots, verifying
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
        location = scoping.load(conn, server.control_schema, source.uid)
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


def _owner_ddl(server: commands.Server, record: registry.TenantRecord, ddl: str) -> None:
    """DDL the way migrations run it: on a session as the owner role, in its schema."""
    with server.sessions.session(record.owner_role, record.database_name) as conn:
        conn.execute(f'SET search_path = "{snapshots.home_schema(record)}"')
        conn.execute(ddl.encode())


def _scratch_roles(admin: psycopg.Connection) -> int:
    row = admin.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 't\\_verify\\_%'")
    return int(row.fetchone()[0])  # type: ignore[index]


@pytest.mark.parametrize("mode", [Isolation.SCHEMA, Isolation.DATABASE], ids=str)
def test_verify_passes_then_finds_a_planted_mismatch_and_leaves_nothing(
    server: commands.Server, admin: psycopg.Connection, mode: Isolation, tmp_path: Path
) -> None:
    source, password = support.provision(server, "ver", mode)
    _owner_ddl(server, source, "CREATE TABLE notes (id serial PRIMARY KEY, body text)")
    with support.login(server, source, password) as app:
        app.execute("INSERT INTO notes (body) SELECT 'n' || g FROM generate_series(1, 500) g")
    archive = support.dump_to_file(server, source, tmp_path / "dump")
    before = _scratch_roles(admin)
    with (tmp_path / "dump").open("rb") as data:
        good = verifying.verify(server, archive, data)
    assert good.ok, good.mismatches
    planted = dataclasses.replace(
        archive,
        tables=[
            dataclasses.replace(t, checksum="0" * 32) if t.name == "notes" else t
            for t in archive.tables
        ],
    )
    with (tmp_path / "dump").open("rb") as data:
        bad = verifying.verify(server, planted, data)
    assert not bad.ok
    assert bad.mismatches == [
        f"table notes's checksum is {good.tables[[t.name for t in good.tables].index('notes')].checksum}"
        f", not {'0' * 32}"
    ]
    assert _scratch_roles(admin) == before
    with connecting.connection(server.pool) as conn:
        left = conn.execute(
            f"SELECT count(*) FROM {server.control_schema}.tenants WHERE name LIKE 'verify-%'"
        ).fetchone()
    assert left == (0,)


SHARED_USER = (
    "INSERT INTO users (email, full_name, time_zone, created_at) VALUES (%s, 'U', 'UTC', now())"
)


def test_a_shared_export_holds_only_its_tenant_and_restores_as_the_new_one(
    server: commands.Server, admin: psycopg.Connection, tmp_path: Path
) -> None:
    source, password = support.provision(server, "sa", Isolation.SHARED)
    other, _ = support.provision(server, "sb", Isolation.SHARED)
    with connecting.connection(server.pool) as conn:
        location = scoping.load(conn, server.control_schema, source.uid)
    assert location is not None
    seeding.create_sample_tables(server, location)
    _seed(server, source.uid, "development")
    _seed(server, other.uid, "production")
    with support.login(server, source, password) as app:
        app.execute(SHARED_USER, ("own@example.com",))
    archive = support.dump_to_file(server, source, tmp_path / "rows")
    space = str(source.schema_name)
    others = 0
    for table in archive.tables:
        found = admin.execute(
            f"SELECT count(*) FILTER (WHERE tenant_id = %s), count(*) FROM {space}.{table.name}",
            (source.uid,),
        ).fetchone()
        assert found is not None
        mine, everyone = found
        assert table.rows == mine, table.name
        others += everyone - mine
    assert others > 0  # the other tenant's rows are there, and none is in the export
    blocks = _blocks(tmp_path / "rows")
    assert {b.table: b.rows for b in blocks} == {t.name: t.rows for t in archive.tables}
    assert all("tenant_id" not in b.columns for b in blocks)

    target, target_password = support.provision(server, "sc", Isolation.SHARED)
    support.restore_file(server, archive, tmp_path / "rows", target)
    with (
        support.login(server, source, password) as old,
        support.login(server, target, target_password) as new,
    ):
        for table in archive.tables:
            assert support.rows(old, table.name, ("tenant_id",)) == support.rows(
                new, table.name, ("tenant_id",)
            ), table.name
        tenants = new.execute("SELECT DISTINCT tenant_id::text FROM users").fetchall()
        assert tenants == [(target.uid,)]
        new.execute(SHARED_USER, ("later@example.com",))
    with (tmp_path / "rows").open("rb") as data:
        checked = verifying.verify(server, archive, data)
    assert checked.ok, checked.mismatches
    again = _seed(server, target.uid, "development")
    assert again.applied == []
    # dropping the restored tenant deletes its rows children first (the sample tables
    # reference each other), and only its rows
    commands.deprovision(server, target.uid, "sc", drop=True)
    for table in archive.tables:
        left = admin.execute(
            f"SELECT count(*) FILTER (WHERE tenant_id = %s), count(*) FILTER (WHERE tenant_id = %s)"
            f" FROM {space}.{table.name}",
            (target.uid, source.uid),
        ).fetchone()
        assert left == (0, table.rows), table.name


def _blocks(path: Path) -> list[framing.Block]:
    with path.open("rb") as raw:
        reader = framing.Buffered(raw.read)
        framing.read_magic(reader)
        found = []
        while (block := framing.read_header(reader)) is not None:
            reader.copy_block(lambda _: None)
            found.append(block)
    return found


HOSTILE = r"""
CREATE TABLE notes (id int PRIMARY KEY, body text);
CREATE FUNCTION shout() RETURNS text LANGUAGE sql AS $fn$
SELECT '
\! touch {marker}
\.
COPY notes FROM stdin;
{schema}.notes'
$fn$;
COMMENT ON TABLE notes IS E'\n\\! touch {marker}\n\\.\nCOPY notes FROM stdin;\n';
"""


def test_a_hostile_archive_runs_nothing_but_sql_as_the_target_owner(
    server: commands.Server, tmp_path: Path
) -> None:
    source, password = support.provision(server, "evil", Isolation.SCHEMA)
    marker = tmp_path / "pwned"
    _owner_ddl(server, source, HOSTILE.format(marker=marker, schema=source.schema_name))
    body = f"\\! touch {marker}\n\\.\nCOPY x FROM stdin;\nin {source.schema_name} \\.\n"
    with support.login(server, source, password) as app:
        app.execute("INSERT INTO notes VALUES (1, %s), (2, '\\.')", (body,))
    archive = support.dump_to_file(server, source, tmp_path / "dump")
    target, target_password = support.provision(server, "victim", Isolation.SCHEMA)
    support.restore_file(server, archive, tmp_path / "dump", target)
    assert not marker.exists()
    with support.login(server, target, target_password) as new:
        assert new.execute("SELECT body FROM notes ORDER BY id").fetchall() == [(body,), ("\\.",)]
        comment = new.execute("SELECT obj_description('notes'::regclass)").fetchone()
        assert comment == (f"\n\\! touch {marker}\n\\.\nCOPY notes FROM stdin;\n",)
        shout = new.execute("SELECT shout()").fetchone()
        assert shout is not None and shout[0].endswith(f"{target.schema_name}.notes")
        owner = new.execute(
            "SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = 'notes'::regclass"
        ).fetchone()
        assert owner == (target.owner_role,)


def test_concurrent_dumps_each_see_one_moment(server: commands.Server, tmp_path: Path) -> None:
    source, password = support.provision(server, "busy", Isolation.SCHEMA)
    _owner_ddl(server, source, "CREATE TABLE a (n int); CREATE TABLE b (n int)")
    stop, started = threading.Event(), threading.Event()

    def write() -> None:
        with support.login(server, source, password) as app:
            n = 0
            while not stop.is_set():
                n += 1
                with app.transaction():
                    app.execute("INSERT INTO a VALUES (%s)", (n,))
                    app.execute("INSERT INTO b VALUES (%s)", (n,))
                if n == 50:
                    started.set()

    writer = threading.Thread(target=write)
    writer.start()
    assert started.wait(timeout=30)
    results: dict[int, manifest.Manifest] = {}
    try:

        def run(i: int) -> None:
            results[i] = support.dump_to_file(server, source, tmp_path / f"dump{i}")

        dumps = [threading.Thread(target=run, args=(i,)) for i in range(3)]
        for thread in dumps:
            thread.start()
        for thread in dumps:
            thread.join()
    finally:
        stop.set()
        writer.join()
    assert len(results) == 3
    for i, archive in results.items():
        counts = {t.name: t.rows for t in archive.tables}
        assert counts["a"] == counts["b"] > 0
        with (tmp_path / f"dump{i}").open("rb") as data:
            assert verifying.verify(server, archive, data).ok
