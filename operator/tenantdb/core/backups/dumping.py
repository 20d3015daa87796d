"""A tenant's data as one byte stream, with the row counts and checksums of its snapshot.

``schema`` and ``database`` tenants: ``pg_dump --format=custom --compress=0``
(compression belongs to the archive layer) of the tenant's schema, or of its
whole database, logged in as the tenant's owner role and reading the
snapshot ``snapshots.taken`` exported, so the checksums (read in the same
snapshot, on the owner's session, while pg_dump runs) describe exactly the
dumped rows. What ``pg_dump -n`` leaves out and a restore needs is recorded
beside it: the extensions the schema's objects depend on. Its grants,
default privileges and sequence positions are in the dump.

``shared`` tenants: the ``framing`` layout, one block per shared table of the
space in foreign-key order, read in one snapshot on a session narrowed to
the tenant's own login role: row-level security picks the rows, so no other
tenant's row can be in the stream. ``tenant_id`` is left out of every block
and out of every checksum.
"""

import concurrent.futures
import secrets
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from tenantdb.core import errors, naming, registry, tenancy
from tenantdb.core.backups import catalog, checksums, framing, manifest, programs, snapshots
from tenantdb.core.backups import tools as tools_

PG_DUMP_PAYLOAD = "pg_dump-custom"
SHARED_EXCLUDED = ("tenant_id",)
"""Columns a shared tenant's export and checksums leave out."""
LOCKS_DEADLINE = 30.0
"""Seconds pg_dump may take to hold its table locks before the dump gives up."""
_POLL = 0.05


@dataclass(frozen=True)
class DumpResult:
    """What the manifest needs from a dump."""

    isolation: str
    payload: str
    server_version: int
    schema_version: int | None
    migrations: list[manifest.AppliedMigration]
    seeders: list[str]
    seed_history: list[manifest.SeededEntry]
    tables: list[manifest.TableSummary]
    extensions: list[str]
    size_bytes: int
    """Payload bytes written to the sink."""


def dump(
    server: tenancy.Server,
    record: registry.TenantRecord,
    sink: programs.Sink,
    progress: programs.Progress | None = None,
    tools_dir: Path | None = None,
) -> DumpResult:
    """Write the tenant's data to ``sink`` (``.write(bytes)``) and describe it.

    ``tools_dir``: a directory tried first for pg_dump (``tools.find``)."""
    check_names(record)
    with snapshots.taken(server, record) as snap:
        if record.isolation == "shared":
            snap.release()
            tables, size = _export_rows(server, snap, record, sink, progress)
            payload = framing.PAYLOAD
        else:
            found = tools_.find(snap.server_version, tools_dir)
            tables, size = _pg_dump(server, record, snap, found, sink, progress)
            payload = PG_DUMP_PAYLOAD
    history = snap.provenance
    return DumpResult(
        isolation=record.isolation,
        payload=payload,
        server_version=snap.server_version,
        schema_version=history.schema_version,
        migrations=history.migrations,
        seeders=[entry.seeder for entry in history.seeded],
        seed_history=history.seeded,
        tables=tables,
        extensions=snap.extensions,
        size_bytes=size,
    )


def check_names(record: registry.TenantRecord) -> None:
    """A restore finds the archive's schema and roles from the tenant's name and uid
    (``naming.tenant_names``): refuse a tenant whose registry row names others."""
    if record.isolation == "shared":
        return
    names = naming.tenant_names(record.name, record.uid)
    schema = names.schema if record.isolation == "schema" else "public"
    expected = (schema, names.owner_role, names.login_role)
    if (record.schema_name, record.owner_role, record.login_role) != expected:
        raise errors.BackupError(
            f"tenant {record.name}'s schema and roles are not the ones its name and uid give"
        )


def _pg_dump(
    server: tenancy.Server,
    record: registry.TenantRecord,
    snap: snapshots.Snapshot,
    found: tools_.Tools,
    sink: programs.Sink,
    progress: programs.Progress | None,
) -> tuple[list[manifest.TableSummary], int]:
    """pg_dump into ``sink`` on a thread while the checksums are read here."""
    application = f"{programs.APPLICATION}-{secrets.token_hex(6)}"
    target = programs.child_conninfo(server, record.owner_role, record.database_name, application)
    argv = [
        str(found.pg_dump),
        "--format=custom",
        "--compress=0",
        f"--snapshot={snap.snapshot_id}",
        f"--lock-wait-timeout={snapshots.LOCK_WAIT}",
        "--no-password",
        f"--dbname={target}",
    ]
    if record.isolation == "schema":
        argv.append(f'--schema="{record.schema_name}"')
    moved: list[int] = []
    failures: list[BaseException] = []
    with programs.running(argv, programs.child_env(server, record.owner_role)) as child:
        assert child.stdout is not None
        stdout = child.stdout

        def pump() -> None:
            try:
                moved.append(programs.pump(stdout.read, sink.write, progress))
            except BaseException as exc:
                failures.append(exc)
                child.kill()

        thread = threading.Thread(target=pump, daemon=True)
        thread.start()
        try:
            _await_locks(snap, application, child)
            snap.release()
            tables = _summaries(snap, record)
        except BaseException:
            child.kill()
            raise
        finally:
            thread.join()
        if failures:
            raise failures[0]
    return tables, moved[0] if moved else 0


_DUMP_LOCKS = sql.SQL(
    "SELECT pg_catalog.count(DISTINCT l.relation) FROM pg_catalog.pg_locks l"
    " JOIN pg_catalog.pg_stat_activity a ON a.pid OPERATOR(pg_catalog.=) l.pid"
    " WHERE a.application_name OPERATOR(pg_catalog.=) %s AND l.granted"
    " AND l.locktype OPERATOR(pg_catalog.=) 'relation'"
    " AND l.relation OPERATOR(pg_catalog.=) ANY(%s::pg_catalog.regclass[])"
)


def _await_locks(snap: snapshots.Snapshot, application: str, child: Any) -> None:
    """Until pg_dump holds ACCESS SHARE on every table (or has exited)."""
    if not snap.relations:
        return
    names = [sql.Identifier(s, t).as_string(snap.conn) for s, t in snap.relations]
    deadline = time.monotonic() + LOCKS_DEADLINE
    while child.poll() is None:
        snap.conn.execute("SELECT pg_catalog.pg_stat_clear_snapshot()")
        row = snap.conn.execute(_DUMP_LOCKS, (application, names)).fetchone()
        if row is not None and int(row[0]) >= len(names):
            return
        if time.monotonic() > deadline:
            raise errors.TenantBusy("pg_dump could not lock the tenant's tables in time")
        time.sleep(_POLL)


def _summaries(
    snap: snapshots.Snapshot, record: registry.TenantRecord
) -> list[manifest.TableSummary]:
    home = snapshots.home_schema(record)
    found = []
    for schema, table in snap.relations:
        summary = checksums.table_summary(snap.conn, schema, table)
        name = catalog.summary_name(schema, table, home)
        found.append(manifest.TableSummary(name, summary.rows, summary.checksum))
    return found


def _export_rows(
    server: tenancy.Server,
    snap: snapshots.Snapshot,
    record: registry.TenantRecord,
    sink: programs.Sink,
    progress: programs.Progress | None,
) -> tuple[list[manifest.TableSummary], int]:
    """Each shared table's rows as the tenant sees them, in the snapshot's one transaction;
    the checksums are read meanwhile on a second session in the same snapshot."""
    conn = snap.conn
    out = _Batched(sink, progress)
    out.write(framing.MAGIC)
    opened: list[psycopg.Connection[Any]] = []
    with concurrent.futures.ThreadPoolExecutor(1) as side:
        summing = side.submit(_shared_summaries, server, record, snap, opened)
        try:
            counts = [_export_table(conn, schema, table, out) for schema, table in snap.relations]
        except BaseException:
            if not summing.cancel() and opened:
                opened[0].cancel_safe()  # else leaving the block waits for the checksums
            raise
        out.write(framing.trailer())
        out.flush()
        tables = summing.result()
    if [t.rows for t in tables] != counts:
        raise errors.BackupError("the checksums and the export of one snapshot disagree")
    return tables, out.size


def _shared_summaries(
    server: tenancy.Server,
    record: registry.TenantRecord,
    snap: snapshots.Snapshot,
    opened: list[psycopg.Connection[Any]],
) -> list[manifest.TableSummary]:
    """Every table's checksum on a session joined to the snapshot (put into ``opened``)."""
    with snapshots.joined(server, record, snap.snapshot_id) as conn:
        opened.append(conn)
        return [
            checksums.table_summary(conn, schema, table, SHARED_EXCLUDED)
            for schema, table in snap.relations
        ]


def _export_table(conn: psycopg.Connection[Any], schema: str, table: str, out: "_Batched") -> int:
    """One block (header, rows, end line); its rows."""
    columns = export_columns(conn, schema, table)
    counted = conn.execute(
        sql.SQL("SELECT pg_catalog.count(*) FROM {}").format(sql.Identifier(schema, table))
    ).fetchone()
    rows = int(counted[0]) if counted else 0
    out.write(framing.header(framing.Block(table, columns, rows)))
    with conn.cursor().copy(_copy_out(schema, table, columns)) as copy:
        for data in copy:
            out.write(data)
    out.write(framing.END_OF_DATA)
    return rows


_EXPORTED = sql.SQL(
    "SELECT a.attname::text FROM pg_catalog.pg_attribute a"
    " WHERE a.attrelid OPERATOR(pg_catalog.=) pg_catalog.to_regclass(%s)"
    " AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped"
    " AND a.attgenerated OPERATOR(pg_catalog.=) '' AND a.attname OPERATOR(pg_catalog.<>) ALL(%s)"
    " ORDER BY a.attnum"
)


def export_columns(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    """The columns a shared table's block carries: all but ``tenant_id`` and generated ones."""
    qualified = sql.Identifier(schema, table).as_string(conn)
    rows = conn.execute(_EXPORTED, (qualified, list(SHARED_EXCLUDED))).fetchall()
    return [str(row[0]) for row in rows]


def _copy_out(schema: str, table: str, columns: Sequence[str]) -> sql.Composed:
    names = sql.SQL(", ").join(sql.Identifier(c) for c in columns)
    return sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT").format(
        names, sql.Identifier(schema, table)
    )


class _Batched:
    """Writes gathered into ``programs.CHUNK``-sized pieces: COPY gives one row per
    message, and a compressor, a hash and a storage write per row would cost more
    than the row."""

    def __init__(self, sink: programs.Sink, progress: programs.Progress | None) -> None:
        self._sink = sink
        self._progress = progress
        self._pending = bytearray()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._pending += data
        if len(self._pending) >= programs.CHUNK:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        self._sink.write(bytes(self._pending))
        self.size += len(self._pending)
        self._pending.clear()
        if self._progress is not None:
            self._progress(self.size)


def manifest_for(
    record: registry.TenantRecord,
    result: DumpResult,
    started_at: str,
    completed_at: str,
    tool_version: str,
) -> manifest.Manifest:
    """The manifest of a dump (the archive layer fills in size, hash and compression)."""
    return manifest.Manifest(
        tenant=record.name,
        namespace=record.namespace,
        tenant_uid=record.uid,
        isolation=result.isolation,
        payload=result.payload,
        server_version=result.server_version,
        tool_version=tool_version,
        started_at=started_at,
        completed_at=completed_at,
        schema_version=result.schema_version,
        migrations=result.migrations,
        seeders=result.seeders,
        seed_history=result.seed_history,
        tables=result.tables,
        extensions=result.extensions,
        payload_bytes=result.size_bytes,
    )
